use super::*;

fn opts() -> ReadOptions {
    ReadOptions::default()
}

#[test]
fn roundtrip_plain_values() {
    let v = Value::dict(vec![
        (Value::str("a"), Value::Int(1)),
        (Value::str("big"), Value::Int(-5_000_000_000)),
        (Value::str("f"), Value::Float(0.25)),
        (Value::str("t"), Value::Tuple(vec![Value::Int(0), Value::Int(1), Value::Int(2)])),
        (Value::str("t4"), Value::Tuple((0..5).map(Value::Int).collect())),
        (Value::str("l"), Value::List(vec![Value::None, Value::Bool(true), Value::str("x")])),
        (Value::str("b"), Value::Bytes(vec![0, 255, 10])),
        (Value::str("od"), Value::Dict { items: vec![(Value::str("k"), Value::Int(70000))], ordered: true }),
        (
            Value::str("arr"),
            Value::Array(NdArray {
                dtype: DType::F64,
                shape: vec![2],
                data: [1.5f64, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect(),
            }),
        ),
    ]);
    let bytes = write(&v);
    let back = read(&bytes, &opts()).unwrap();
    assert_eq!(back, v);
    assert_eq!(back.get("arr").unwrap().to_json().unwrap(), serde_json::json!([1.5, -2.0]));
}

#[test]
fn roundtrip_tensor_reference() {
    let t = TensorRef {
        storage: "3".into(),
        dtype: DType::F32,
        storage_numel: 24,
        offset: 0,
        shape: vec![2, 3, 4],
        stride: vec![12, 4, 1],
    };
    let v = Value::Dict { items: vec![(Value::str("w"), Value::Tensor(t.clone()))], ordered: true };
    let back = read(&write(&v), &opts()).unwrap();
    assert_eq!(back.get("w"), Some(&Value::Tensor(t)));
}

#[test]
fn refuses_code_execution() {
    // pickle.dumps of os.system('echo pwned') via __reduce__ (protocol 0).
    let evil = b"cos\nsystem\n(Vecho pwned\ntR.";
    let e = read(evil, &opts()).unwrap_err();
    assert!(e.msg.contains("os.system"), "{e}");
    // builtins.eval through STACK_GLOBAL (protocol 4).
    let evil4 = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x041+1\x85R.";
    let e = read(evil4, &opts()).unwrap_err();
    assert!(e.msg.contains("builtins.eval"), "{e}");
    // A referenced-only global can never be called.
    let o = ReadOptions { references: vec!["os.system".into()], ..opts() };
    let e = read(evil, &o).unwrap_err();
    assert!(e.msg.contains("refuses to call os.system"), "{e}");
    // INST / OBJ opcodes are refused outright.
    assert!(read(b"(ios\nsystem\nS'x'\n.", &opts()).is_err());
}

#[test]
fn refuses_truncated_and_oversized() {
    let v = Value::dict(vec![(Value::str("key"), Value::List(vec![Value::Int(1); 10]))]);
    let bytes = write(&v);
    for cut in 1..bytes.len() {
        assert!(read(&bytes[..cut], &opts()).is_err(), "cut at {cut}");
    }
    // A string that declares more bytes than the file has.
    let e = read(b"\x80\x02X\xff\xff\xff\x7fabc.", &opts()).unwrap_err();
    assert!(e.msg.contains("declares"), "{e}");
    // A tensor view past its storage.
    let t = TensorRef {
        storage: "0".into(),
        dtype: DType::F32,
        storage_numel: 5,
        offset: 2,
        shape: vec![4],
        stride: vec![1],
    };
    let e = read(&write(&Value::Tensor(t)), &opts()).unwrap_err();
    assert!(e.msg.contains("past its storage"), "{e}");
}

#[test]
fn bounded_depth_and_expansion() {
    // 1000 nested empty lists: deeper than the limit.
    let mut b = vec![0x80, 2];
    for _ in 0..1000 {
        b.push(b']');
    }
    for _ in 0..999 {
        b.push(b'a');
    }
    b.push(b'.');
    let e = read(&b, &opts()).unwrap_err();
    assert!(e.msg.contains("deeper"), "{e}");
    // "Billion laughs": each level a list holding the previous one 10 times via the memo.
    let mut b = vec![0x80, 2, b']', b'q', 0];
    for lvl in 1..30u8 {
        b.extend_from_slice(&[b']', b'(']);
        for _ in 0..10 {
            b.extend_from_slice(&[b'h', lvl - 1]);
        }
        b.extend_from_slice(&[b'e', b'q', lvl]);
    }
    b.push(b'.');
    let e = read(&b, &ReadOptions { max_nodes: 100_000, ..opts() }).unwrap_err();
    assert!(e.msg.contains("more than"), "{e}");
}

#[test]
fn memoised_container_filled_after_put_is_shared() {
    // l = []; l.append(1); [l, l] — the memo entry is taken before the list is filled.
    let b = b"\x80\x02](]q\x00K\x01ah\x00e.";
    let v = read(b, &opts()).unwrap();
    assert_eq!(v, Value::List(vec![Value::List(vec![Value::Int(1)]), Value::List(vec![Value::Int(1)])]));
}

#[test]
fn numpy_scalars_and_dtype() {
    // pickle.dumps(np.float64(0.5), protocol=2) and of np.array([1, 2], dtype=np.int64), numpy 2.
    let b: &[u8] = b"\x80\x02cnumpy._core.multiarray\nscalar\nq\x00cnumpy\ndtype\nq\x01X\x02\x00\x00\x00f8q\x02\x89\x88\x87q\x03Rq\x04(K\x03X\x01\x00\x00\x00<q\x05NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x06bc_codecs\nencode\nq\x07X\t\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xa0?q\x08X\x06\x00\x00\x00latin1q\t\x86q\nRq\x0b\x86q\x0cRq\r.";
    assert_eq!(read(b, &opts()).unwrap(), Value::Float(0.5));
    let b: &[u8] = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02\x85q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00i8q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x10\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00q\x11h\x05\x86q\x12Rq\x13tq\x14b.";
    let v = read(b, &opts()).unwrap();
    assert_eq!(v.to_json().unwrap(), serde_json::json!([1, 2]));
}
