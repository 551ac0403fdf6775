//! f32 buffers owned by Rust and seen by libtorch as CPU tensors, without a copy.
//!
//! Prediction of a big volume handles a few arrays of the size of the image (the input
//! channels, the logit accumulators). Moving them between `Vec<f32>` and `Tensor` with
//! `from_slice` / `copy_data` costs a full-size copy each way, at the moment memory is at its
//! peak; [`HostTensor`] lends the vector's memory to libtorch instead (`from_blob`) and gives
//! the vector back afterwards. Written by hand: tch only offers the unsafe `from_blob`.

use crate::error::{InferError, Result};
use tch::{Device, Kind, Tensor};

/// A `Vec<f32>` viewed as a contiguous CPU tensor of a given shape.
///
/// Safety: the tensor aliases the vector's heap buffer. The vector is never touched (nor
/// reallocated) while the tensor exists: it is only reachable through [`HostTensor::into_vec`],
/// which drops the tensor first. Callers must not let views of [`HostTensor::tensor`] outlive
/// the `HostTensor` (libtorch would not keep the memory alive); they are used as temporaries.
pub struct HostTensor {
    tensor: Option<Tensor>,
    data: Vec<f32>,
}

impl HostTensor {
    /// Wraps `data` as a tensor of `shape` (the product must equal its length).
    pub fn new(mut data: Vec<f32>, shape: &[usize]) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(InferError::Invalid(format!("{} values do not make a tensor of shape {shape:?}", data.len())));
        }
        let dims: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
        // An empty vector has a dangling pointer; libtorch never reads it for 0 elements.
        let ptr = data.as_mut_ptr() as *const u8;
        // SAFETY: `ptr` points to `n` initialised f32 values that stay in place (see the type's
        // comment) until the tensor is dropped.
        let tensor = unsafe { Tensor::f_from_blob(ptr, &dims, &[], Kind::Float, Device::Cpu)? };
        Ok(HostTensor { tensor: Some(tensor), data })
    }

    /// A zero-filled buffer (pages are mapped lazily by the allocator).
    pub fn zeros(shape: &[usize]) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        HostTensor::new(vec![0f32; n], shape)
    }

    pub fn tensor(&self) -> &Tensor {
        self.tensor.as_ref().expect("the tensor lives until into_vec")
    }

    /// Ends the loan and returns the buffer.
    pub fn into_vec(mut self) -> Vec<f32> {
        self.tensor = None;
        std::mem::take(&mut self.data)
    }
}

impl Drop for HostTensor {
    fn drop(&mut self) {
        // The tensor goes first, before the memory it points to.
        self.tensor = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_through_the_tensor_land_in_the_vector() {
        let h = HostTensor::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let mut row = h.tensor().narrow(0, 1, 1);
        row += 10.0;
        drop(row);
        assert_eq!(h.into_vec(), vec![1.0, 2.0, 3.0, 14.0, 15.0, 16.0]);
        assert!(HostTensor::new(vec![0.0; 5], &[2, 3]).is_err());
        let z = HostTensor::zeros(&[0, 4]).unwrap();
        assert_eq!(z.tensor().size(), vec![0, 4]);
        assert!(z.into_vec().is_empty());
    }
}
