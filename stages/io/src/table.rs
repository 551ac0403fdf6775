//! Small columnar tables (fingerprints, training logs, metrics) written as Parquet (zstd).
//!
//! Deliberately tiny: named columns of f64 / i64 / string / bool, written and read whole.
//! NaN is a valid f64 (nnU-Net's Dice for empty-empty cases).

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("column '{0}': {1}")]
    Column(String, String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Str(Vec<String>),
    Bool(Vec<bool>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Str(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn to_arrow(&self) -> (DataType, ArrayRef) {
        match self {
            Column::F64(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone()))),
            Column::I64(v) => (DataType::Int64, Arc::new(Int64Array::from(v.clone()))),
            Column::Str(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone()))),
            Column::Bool(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone()))),
        }
    }
}

/// A named set of equally long columns, in insertion order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a column (builder style). All columns must have the same length.
    pub fn with(mut self, name: &str, col: Column) -> Self {
        self.names.push(name.to_string());
        self.columns.push(col);
        self
    }

    pub fn nrows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.names.iter().position(|n| n == name).map(|i| &self.columns[i])
    }

    pub fn f64(&self, name: &str) -> Result<&[f64], TableError> {
        match self.column(name) {
            Some(Column::F64(v)) => Ok(v),
            Some(_) => Err(TableError::Column(name.into(), "is not f64".into())),
            None => Err(TableError::Column(name.into(), "missing".into())),
        }
    }

    pub fn str(&self, name: &str) -> Result<&[String], TableError> {
        match self.column(name) {
            Some(Column::Str(v)) => Ok(v),
            Some(_) => Err(TableError::Column(name.into(), "is not a string".into())),
            None => Err(TableError::Column(name.into(), "missing".into())),
        }
    }

    pub fn i64(&self, name: &str) -> Result<&[i64], TableError> {
        match self.column(name) {
            Some(Column::I64(v)) => Ok(v),
            Some(_) => Err(TableError::Column(name.into(), "is not i64".into())),
            None => Err(TableError::Column(name.into(), "missing".into())),
        }
    }

    /// Writes the table as one Parquet row group (zstd level 3).
    pub fn write_parquet(&self, path: &Path) -> Result<(), TableError> {
        let err = |msg: String| TableError::File { path: path.to_path_buf(), msg };
        let n = self.nrows();
        if let Some((name, c)) = self.names.iter().zip(&self.columns).find(|(_, c)| c.len() != n) {
            return Err(TableError::Column(name.clone(), format!("has {} rows, expected {n}", c.len())));
        }
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = self
            .names
            .iter()
            .zip(&self.columns)
            .map(|(name, c)| {
                let (dt, a) = c.to_arrow();
                (Field::new(name, dt, false), a)
            })
            .unzip();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| err(e.to_string()))?;
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("zstd level")))
            .build();
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| err(e.to_string()))?;
        w.write(&batch).map_err(|e| err(e.to_string()))?;
        w.close().map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    /// Reads a Parquet file written by [`Table::write_parquet`] (or any file with those types).
    pub fn read_parquet(path: &Path) -> Result<Table, TableError> {
        let err = |msg: String| TableError::File { path: path.to_path_buf(), msg };
        let file = File::open(path).map_err(|e| err(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| err(e.to_string()))?
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut t = Table::new();
        for batch in reader {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            if t.names.is_empty() {
                for f in batch.schema().fields() {
                    let col = match f.data_type() {
                        DataType::Float64 => Column::F64(vec![]),
                        DataType::Int64 => Column::I64(vec![]),
                        DataType::Utf8 => Column::Str(vec![]),
                        DataType::Boolean => Column::Bool(vec![]),
                        other => return Err(err(format!("column {}: unsupported type {other}", f.name()))),
                    };
                    t.names.push(f.name().clone());
                    t.columns.push(col);
                }
            }
            for (i, col) in t.columns.iter_mut().enumerate() {
                let a = batch.column(i);
                let any = a.as_any();
                let bad = || err(format!("column {i} changed type between batches"));
                match col {
                    Column::F64(v) => v.extend(any.downcast_ref::<Float64Array>().ok_or_else(bad)?.values().iter()),
                    Column::I64(v) => v.extend(any.downcast_ref::<Int64Array>().ok_or_else(bad)?.values().iter()),
                    Column::Str(v) => {
                        let s = any.downcast_ref::<StringArray>().ok_or_else(bad)?;
                        v.extend((0..s.len()).map(|j| s.value(j).to_string()))
                    }
                    Column::Bool(v) => {
                        let s = any.downcast_ref::<BooleanArray>().ok_or_else(bad)?;
                        v.extend((0..s.len()).map(|j| s.value(j)))
                    }
                }
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_roundtrip_with_nan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let t = Table::new()
            .with("case", Column::Str(vec!["a".into(), "b".into()]))
            .with("dice", Column::F64(vec![0.5, f64::NAN]))
            .with("tp", Column::I64(vec![3, 0]))
            .with("ok", Column::Bool(vec![true, false]));
        t.write_parquet(&p).unwrap();
        let r = Table::read_parquet(&p).unwrap();
        assert_eq!(r.names, t.names);
        assert_eq!(r.str("case").unwrap(), t.str("case").unwrap());
        assert!(r.f64("dice").unwrap()[1].is_nan());
        assert_eq!(r.i64("tp").unwrap(), &[3, 0]);
    }

    #[test]
    fn ragged_columns_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let t = Table::new().with("a", Column::F64(vec![1.0])).with("b", Column::I64(vec![]));
        assert!(t.write_parquet(&dir.path().join("x.parquet")).is_err());
    }
}
