//! One model run, the only place a session runs: lock the session, time the run as model
//! work (the accounting `reelbox bench render` splits a render's wall time by), and read
//! the wanted outputs back as f32 with their shapes checked. A run inside
//! [`super::stoppable`] ends mid-graph when its job is canceled.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use half::f16;
use ort::session::{Session, SessionInputs};
use ort::value::{DynValue, TensorElementType};

use super::error::{EngineError, OutputCause};
use super::{SharedSession, cancel};
use crate::busy::{self, Busy};

/// An output a run must produce and the shape it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want<'a> {
    /// The output's name in the graph.
    pub name: &'a str,
    /// Required sizes per axis, `-1` for any; `None` accepts any shape.
    pub shape: Option<&'a [i64]>,
}

impl<'a> Want<'a> {
    /// An output of any shape.
    pub fn any(name: &'a str) -> Self {
        Self { name, shape: None }
    }

    /// An output whose axes match `shape` (`-1` matches any size).
    pub fn shaped(name: &'a str, shape: &'a [i64]) -> Self {
        Self { name, shape: Some(shape) }
    }
}

/// An output read back as f32, with its shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// The output's name in the graph.
    pub name: String,
    /// Sizes per axis.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<f32>,
}

/// What a run produced: the wanted outputs in the order asked, and the time the model ran.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// One per [`Want`], in the order asked.
    pub tensors: Vec<Output>,
    /// Wall time inside ONNX Runtime's `run`.
    pub took: Duration,
}

/// Locks `session` (named `model` in errors) for one or more runs.
pub fn lock<'s>(session: &'s SharedSession, model: &str) -> Result<MutexGuard<'s, Session>, EngineError> {
    session.lock().map_err(|_| EngineError::Poisoned { what: model.to_string() })
}

/// Locks `session` and runs it once; see [`run_locked`].
pub fn run<'i, 'v: 'i, const N: usize>(
    session: &SharedSession,
    model: &str,
    inputs: impl Into<SessionInputs<'i, 'v, N>>,
    wants: &[Want<'_>],
) -> Result<Outputs, EngineError> {
    run_locked(&mut *lock(session, model)?, model, inputs, wants)
}

/// Runs a session already locked (callers that run it several times under one lock), timed
/// as [`Busy::Model`], and returns the `wants` outputs as f32 (f16 and f64 are converted).
pub fn run_locked<'i, 'v: 'i, const N: usize>(
    session: &mut Session,
    model: &str,
    inputs: impl Into<SessionInputs<'i, 'v, N>>,
    wants: &[Want<'_>],
) -> Result<Outputs, EngineError> {
    let started = Instant::now();
    let stop = cancel::run_options();
    let outputs = busy::timed(Busy::Model, || match &stop {
        Some((options, _)) => session.run_with_options(inputs, &**options),
        None => session.run(inputs),
    })
    .map_err(|source| match &stop {
        // ONNX Runtime's "Exiting due to terminate flag" is the job's cancel, not a failure.
        Some((_, token)) if token.is_cancelled() => EngineError::Canceled { model: model.to_string() },
        _ => EngineError::Run { model: model.to_string(), source },
    })?;
    let took = started.elapsed();
    let tensors = wants
        .iter()
        .map(|want| {
            let value = outputs.get(want.name).ok_or_else(|| EngineError::MissingOutput {
                model: model.to_string(),
                output: want.name.to_string(),
            })?;
            let bad = |source: OutputCause| EngineError::BadOutput {
                model: model.to_string(),
                output: want.name.to_string(),
                source,
            };
            let (dims, data) = to_f32(value).map_err(bad)?;
            if let Some(expected) = want.shape
                && !shape_fits(&dims, expected)
            {
                return Err(EngineError::BadShape {
                    model: model.to_string(),
                    output: want.name.to_string(),
                    expected: dims_text(expected),
                    got: dims_text(&dims),
                });
            }
            Ok(Output { name: want.name.to_string(), shape: dims.iter().map(|&d| d.max(0) as usize).collect(), data })
        })
        .collect::<Result<_, _>>()?;
    Ok(Outputs { tensors, took })
}

/// Reads a float tensor of any float element type as f32, with its dims.
fn to_f32(value: &DynValue) -> Result<(Vec<i64>, Vec<f32>), OutputCause> {
    match value.dtype().tensor_type() {
        Some(TensorElementType::Float32) => {
            let (s, d) = value.try_extract_tensor::<f32>()?;
            Ok((s.iter().copied().collect(), d.to_vec()))
        }
        Some(TensorElementType::Float16) => {
            let (s, d) = value.try_extract_tensor::<f16>()?;
            Ok((s.iter().copied().collect(), d.iter().map(|v| v.to_f32()).collect()))
        }
        Some(TensorElementType::Float64) => {
            let (s, d) = value.try_extract_tensor::<f64>()?;
            Ok((s.iter().copied().collect(), d.iter().map(|&v| v as f32).collect()))
        }
        other => Err(OutputCause::NotFloat(format!("{other:?}"))),
    }
}

/// Whether `dims` has `expected`'s rank and sizes (`-1` in `expected` matches any size).
pub fn shape_fits(dims: &[i64], expected: &[i64]) -> bool {
    dims.len() == expected.len() && dims.iter().zip(expected).all(|(&d, &e)| e < 0 || d == e)
}

/// Dims as `[1,3,?,?]`, dynamic axes as `?`.
pub fn dims_text(dims: &[i64]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| if *d < 0 { "?".to_string() } else { d.to_string() }).collect();
    format!("[{}]", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_axes_match_any_size_but_rank_must_agree() {
        assert!(shape_fits(&[1, 3, 64, 48], &[1, 3, -1, -1]));
        assert!(!shape_fits(&[1, 4, 64, 48], &[1, 3, -1, -1]));
        assert!(!shape_fits(&[3, 64, 48], &[1, 3, -1, -1]));
        assert_eq!(dims_text(&[2, 3, -1]), "[2,3,?]");
    }
}
