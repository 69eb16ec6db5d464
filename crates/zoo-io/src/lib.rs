//! Safe output for zoo, in one place: every file zoo writes goes through [`write_atomic`]
//! (exclusive temp file, never a followed link, only regular files replaced), every name that
//! came from a file (class folders, CSV labels, model metadata, label files) reaches the
//! terminal through [`printable`], and every CSV cell through [`csv`] (RFC 4180 quoting, and
//! text that a spreadsheet would run as a formula guarded); folders named by environment
//! variables are read by [`env_folder`] (empty means unset), and small files users name by
//! [`read_limited`] (regular files only, never past a limit).

pub mod csv;
mod env;
mod printable;
mod read;
mod write;

pub use env::{env_folder, home_folder};
pub use printable::{printable, printable_text};
pub use read::{open_regular, read_limited, read_text_limited};
pub use write::{check_replaceable, write_atomic, write_atomic_with};
