#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Onnx(#[from] zoo_onnx::OnnxError),
    #[error("input has shape {found}, the network expects {expected}")]
    InputShape { expected: String, found: String },
    #[error("this graph only runs at batch size {batch}: {reason}")]
    FixedBatch { batch: usize, reason: String },
    #[error("cannot replace head layer `{layer}`: {reason}")]
    Head { layer: String, reason: String },
    #[error("no layer named `{name}`; layers: {known}")]
    UnknownLayer { name: String, known: String },
    #[error(
        "training diverged: the loss is {loss} at iteration {iteration}; lower --lr (it is {lr})"
    )]
    Diverged {
        iteration: usize,
        loss: f32,
        lr: f64,
    },
}
