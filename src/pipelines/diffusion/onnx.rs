//! Talking to one ONNX part of a model: what its tensors are called and typed (read from
//! the session, never assumed), building inputs in whatever element type the export wants,
//! and reading outputs back as f32.

use std::borrow::Cow;
use std::time::Duration;

use half::f16;
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, TensorElementType, TensorRef, ValueType};

use super::DiffusionError;
pub use crate::engine::Output;
use crate::engine::{self, EngineError, SharedSession, Want};

/// Name, element type and shape (−1 for dynamic axes) of one input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: TensorElementType,
    pub shape: Vec<i64>,
}

impl TensorInfo {
    /// The size of axis `i` when the export fixes it.
    pub fn fixed(&self, i: usize) -> Option<usize> {
        self.shape.get(i).copied().filter(|&d| d > 0).map(|d| d as usize)
    }
}

/// One ONNX part (text encoder, UNet, VAE) with its interface.
pub struct Part {
    pub name: &'static str,
    pub session: SharedSession,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

fn infos(outlets: &[ort::value::Outlet]) -> Vec<TensorInfo> {
    outlets
        .iter()
        .filter_map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                Some(TensorInfo { name: o.name().to_string(), ty: *ty, shape: shape.iter().copied().collect() })
            }
            _ => None,
        })
        .collect()
}

impl Part {
    /// Wraps a loaded session, reading its inputs and outputs.
    pub fn new(name: &'static str, session: SharedSession) -> Result<Self, DiffusionError> {
        let (inputs, outputs) = {
            let s = engine::lock(&session, name)?;
            (infos(s.inputs()), infos(s.outputs()))
        };
        Ok(Self { name, session, inputs, outputs })
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<&TensorInfo> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<&TensorInfo> {
        self.outputs.iter().find(|t| t.name == name)
    }

    /// Runs the part and returns every output as f32 with its shape, by output order.
    pub fn run(
        &self,
        feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)>,
        clock: &mut Duration,
    ) -> Result<Vec<Output>, DiffusionError> {
        self.run_wanting(feeds, self.outputs.iter().map(|o| Want::any(&o.name)).collect(), clock)
    }

    /// Runs the part and returns only the outputs at `wanted` (indices into `outputs`) as
    /// f32, in that order: a text encoder that exports every layer's states has the one
    /// asked for read out, not all of them.
    pub fn run_outputs(
        &self,
        feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)>,
        wanted: &[usize],
        clock: &mut Duration,
    ) -> Result<Vec<Output>, DiffusionError> {
        let wants = wanted
            .iter()
            .map(|&i| self.outputs.get(i).map(|o| Want::any(&o.name)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| DiffusionError::Run { part: self.name, reason: format!("no output {wanted:?}") })?;
        self.run_wanting(feeds, wants, clock)
    }

    fn run_wanting(
        &self,
        feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)>,
        wants: Vec<Want<'_>>,
        clock: &mut Duration,
    ) -> Result<Vec<Output>, DiffusionError> {
        let outs = engine::run(&self.session, self.name, feeds, &wants)?;
        *clock += outs.took;
        Ok(outs.tensors)
    }
}

/// A float input in the export's element type; f32 data is passed without a copy.
pub fn float_input<'a>(
    info: &TensorInfo,
    shape: Vec<usize>,
    data: &'a [f32],
) -> Result<(Cow<'static, str>, SessionInputValue<'a>), DiffusionError> {
    let err = EngineError::input("input", &info.name);
    let value: SessionInputValue<'a> = match info.ty {
        TensorElementType::Float32 => TensorRef::from_array_view((shape, data)).map_err(err)?.into(),
        TensorElementType::Float16 => owned(
            Tensor::from_array((shape, data.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()))
                .map_err(err)?
                .into_dyn(),
        ),
        TensorElementType::Float64 => owned(
            Tensor::from_array((shape, data.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()))
                .map_err(err)?
                .into_dyn(),
        ),
        other => {
            return Err(DiffusionError::Interface {
                part: "input",
                reason: format!("{} has element type {other:?}, expected float", info.name),
            });
        }
    };
    Ok((Cow::Owned(info.name.clone()), value))
}

/// A float input in the export's element type, owning `data` (f32 moved, not copied).
pub fn owned_float_input(
    info: &TensorInfo,
    shape: Vec<usize>,
    data: Vec<f32>,
) -> Result<(Cow<'static, str>, SessionInputValue<'static>), DiffusionError> {
    let err = EngineError::input("input", &info.name);
    let value = match info.ty {
        TensorElementType::Float32 => Tensor::from_array((shape, data)).map_err(err)?.into_dyn(),
        TensorElementType::Float16 => {
            Tensor::from_array((shape, data.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>()))
                .map_err(err)?
                .into_dyn()
        }
        other => {
            return Err(DiffusionError::Interface {
                part: "input",
                reason: format!("{} has element type {other:?}, expected float", info.name),
            });
        }
    };
    Ok((Cow::Owned(info.name.clone()), owned(value)))
}

/// A boolean input (a mask).
pub fn bool_input(
    info: &TensorInfo,
    shape: Vec<usize>,
    data: Vec<bool>,
) -> Result<(Cow<'static, str>, SessionInputValue<'static>), DiffusionError> {
    if info.ty != TensorElementType::Bool {
        return Err(DiffusionError::Interface {
            part: "input",
            reason: format!("{} has element type {:?}, expected bool", info.name, info.ty),
        });
    }
    let value = Tensor::from_array((shape, data)).map_err(EngineError::input("input", &info.name))?.into_dyn();
    Ok((Cow::Owned(info.name.clone()), owned(value)))
}

/// An integer input (token ids) in the export's element type.
pub fn int_input(
    info: &TensorInfo,
    shape: Vec<usize>,
    data: &[i64],
) -> Result<(Cow<'static, str>, SessionInputValue<'static>), DiffusionError> {
    let err = EngineError::input("input", &info.name);
    let value = match info.ty {
        TensorElementType::Int64 => Tensor::from_array((shape, data.to_vec())).map_err(err)?.into_dyn(),
        TensorElementType::Int32 => {
            Tensor::from_array((shape, data.iter().map(|&v| v as i32).collect::<Vec<_>>())).map_err(err)?.into_dyn()
        }
        other => {
            return Err(DiffusionError::Interface {
                part: "input",
                reason: format!("{} has element type {other:?}, expected int32 or int64", info.name),
            });
        }
    };
    Ok((Cow::Owned(info.name.clone()), owned(value)))
}

/// A timestep in whatever form the UNet takes: scalar or `[n]`, float (f32/f16/f64) or
/// integer (truncated, as numpy's `astype` does).
pub fn timestep_input(
    info: &TensorInfo,
    t: f64,
    n: usize,
) -> Result<(Cow<'static, str>, SessionInputValue<'static>), DiffusionError> {
    let shape: Vec<usize> = match info.shape.len() {
        0 => Vec::new(),
        1 => vec![info.fixed(0).unwrap_or(n)],
        r => {
            return Err(DiffusionError::Interface {
                part: "unet",
                reason: format!("timestep input {} has rank {r}, expected a scalar or [batch]", info.name),
            });
        }
    };
    let count = shape.first().copied().unwrap_or(1);
    let err = EngineError::input("unet", &info.name);
    let value = match info.ty {
        TensorElementType::Float32 => Tensor::from_array((shape, vec![t as f32; count])).map_err(err)?.into_dyn(),
        TensorElementType::Float16 => {
            Tensor::from_array((shape, vec![f16::from_f64(t); count])).map_err(err)?.into_dyn()
        }
        TensorElementType::Float64 => Tensor::from_array((shape, vec![t; count])).map_err(err)?.into_dyn(),
        TensorElementType::Int64 => Tensor::from_array((shape, vec![t as i64; count])).map_err(err)?.into_dyn(),
        TensorElementType::Int32 => Tensor::from_array((shape, vec![t as i32; count])).map_err(err)?.into_dyn(),
        other => {
            return Err(DiffusionError::Interface {
                part: "unet",
                reason: format!("timestep input {} has unsupported element type {other:?}", info.name),
            });
        }
    };
    Ok((Cow::Owned(info.name.clone()), owned(value)))
}

fn owned(v: DynValue) -> SessionInputValue<'static> {
    SessionInputValue::from(v)
}
