//! Shared pieces of berth's OCI hook binaries (MPI, NVIDIA, SSH, launch barrier).
//!
//! Every OCI hook receives the container's state as JSON on stdin (runtime spec,
//! "Lifecycle"); [`read_state`] parses it so each hook starts from typed data.

use std::io::Read;

use oci_spec::runtime::State;

/// Errors common to all hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// stdin could not be read.
    #[error("cannot read the container state from stdin: {0}")]
    Stdin(#[from] std::io::Error),
    /// stdin did not hold an OCI state document.
    #[error("the container state on stdin is not OCI state JSON: {0}")]
    State(#[from] serde_json::Error),
}

/// Parses the OCI state document a runtime writes to a hook's stdin.
pub fn read_state(mut input: impl Read) -> Result<State, HookError> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    Ok(serde_json::from_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runtime_state() {
        let json = r#"{"ociVersion":"1.2.0","id":"c1","status":"created","pid":42,"bundle":"/b"}"#;
        let state = read_state(json.as_bytes()).unwrap();
        assert_eq!(state.id(), "c1");
        assert_eq!(state.pid(), &Some(42));
    }

    #[test]
    fn rejects_garbage() {
        let err = read_state("not json".as_bytes()).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("the container state on stdin is not OCI state JSON"));
    }
}
