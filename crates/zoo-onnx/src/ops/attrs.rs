//! Attribute access for one node, with errors that name the node, and the settings a node
//! gives as constant inputs (read once the inputs are known, [`super::Parsed::Bake`]).

use std::collections::BTreeMap;

use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, NodeProto};

use crate::error::{bad_node, OnnxError, Result};
use crate::tensor::{ConstData, Constant};

/// The attributes of one node.
pub struct Attrs<'a> {
    node: &'a NodeProto,
    label: &'a str,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(node: &'a NodeProto, label: &'a str) -> Self {
        Self { node, label }
    }

    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        bad_node(self.label, &self.node.op_type, reason)
    }

    /// The node's name in messages.
    pub fn label(&self) -> &str {
        self.label
    }

    /// Whether the node carries an attribute of this name (whatever its value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// Whether attribute `a` has type `want` (or no type, as some old exporters write).
    fn is(a: &AttributeProto, want: AttributeType) -> bool {
        let kind = AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined);
        kind == want || kind == AttributeType::Undefined
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if Self::is(a, AttributeType::Int) => Ok(a.i),
            Some(_) => Err(self.err(format!("attribute `{name}` must be an integer"))),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if Self::is(a, AttributeType::Float) => Ok(a.f),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a float"))),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::is(a, AttributeType::Ints) => Ok(Some(a.ints.clone())),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a list of integers"))),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if Self::is(a, AttributeType::Floats) => Ok(Some(a.floats.clone())),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a list of floats"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.err(format!("attribute `{name}` is not UTF-8"))),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&'a tract_onnx::pb::TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }

    /// Every attribute, for ops whose value attribute comes in several spellings.
    pub fn all(&self) -> &'a [AttributeProto] {
        &self.node.attribute
    }
}

/// Settings given as constant inputs. Inputs that are present but not constants are an error
/// naming the node: zoo runs graphs whose structure is static.
pub struct Settings<'a> {
    pub(crate) label: &'a str,
    pub(crate) op_type: &'a str,
    pub(crate) inputs: &'a [String],
    pub(crate) constants: &'a BTreeMap<String, Constant>,
}

impl Settings<'_> {
    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        bad_node(self.label, self.op_type, reason)
    }

    /// The name of input `i`, when present.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Input `i` as integers; `None` when the input is absent.
    pub fn ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        let Some(name) = self.input(i) else {
            return Ok(None);
        };
        match self.constants.get(name) {
            Some(Constant {
                data: ConstData::I64(v),
                ..
            }) => Ok(Some(v.clone())),
            _ => Err(self.err(format!(
                "its {what} `{name}` must be a constant integer tensor (computed settings are not supported)"
            ))),
        }
    }

    /// Input `i` as one float; `None` when the input is absent.
    pub fn scalar(&self, i: usize, what: &str) -> Result<Option<f32>> {
        let Some(name) = self.input(i) else {
            return Ok(None);
        };
        match self.constants.get(name) {
            Some(Constant {
                data: ConstData::F32(v),
                ..
            }) if v.len() == 1 => Ok(Some(v[0])),
            _ => Err(self.err(format!(
                "its {what} `{name}` must be a constant float scalar"
            ))),
        }
    }
}
