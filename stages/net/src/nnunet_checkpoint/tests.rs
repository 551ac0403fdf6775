use super::*;
use nnunet_prep::plans::Plans;

fn fixture(cfg: &str) -> PathBuf {
    Path::new(&nnunet_io::testing::manifest_dir()).join("tests/fixtures/nnunet").join(cfg)
}

fn arch_of(cfg: &str) -> Architecture {
    let plans: Plans =
        serde_json::from_str(&std::fs::read_to_string(fixture(cfg).join("plans.json")).unwrap()).unwrap();
    plans.configuration(cfg).unwrap().architecture
}

fn expected(cfg: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(cfg).join("expected.json")).unwrap()).unwrap()
}

fn shape(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

/// Our network with nnU-Net's weights gives nnU-Net's logits.
fn check_logits(cfg: &str) {
    let ck = fixture(cfg).join("fold_0/checkpoint_final.pth");
    let (_vs, net, info) = load_network(&ck, &arch_of(cfg), Device::Cpu).unwrap();
    let e = expected(cfg);
    assert_eq!(info.configuration.as_deref(), e["configuration"].as_str());
    assert_eq!(info.num_classes, 3);
    assert_eq!(info.in_channels, 1);
    assert_eq!(info.fold.as_deref(), Some("0"));
    assert_eq!(
        info.inference_allowed_mirroring_axes,
        Some(
            e["inference_allowed_mirroring_axes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        )
    );
    let in_shape = shape(&e["input_shape"]);
    let n: i64 = in_shape.iter().product();
    let x: Vec<f32> = (0..n).map(|i| (0.1 * i as f64).sin() as f32).collect();
    let x = Tensor::from_slice(&x).view(in_shape.as_slice());
    let y = tch::no_grad(|| nn::ModuleT::forward_t(&net, &x, false));
    assert_eq!(y.size(), shape(&e["output_shape"]));
    let want: Vec<f32> = std::fs::read(fixture(cfg).join("logits.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let got: Vec<f32> = Vec::try_from(y.contiguous().view([-1])).unwrap();
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-4 * scale.max(1.0), "{cfg}: max |ours − nnU-Net| = {max} (scale {scale})");
}

#[test]
fn plain_2d_matches_nnunet_logits() {
    check_logits("2d");
}

#[test]
fn resenc_3d_matches_nnunet_logits() {
    check_logits("3d_resenc");
}

#[test]
fn written_state_dict_has_nnunet_keys_and_round_trips() {
    for cfg in ["2d", "3d_resenc"] {
        let (_vs, _net, info) =
            load_network(&fixture(cfg).join("fold_0/checkpoint_final.pth"), &arch_of(cfg), Device::Cpu).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let opts = net_options_of(&arch_of(cfg)).unwrap();
        let _ = build_network(&vs.root(), &arch_of(cfg), 1, info.num_classes as i64, &opts).unwrap();
        let want: BTreeSet<String> = expected(cfg)["state_dict_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(expected_state_dict_keys(&vs), want, "{cfg}");
        // Write and read back: same weights, same keys.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fold_0/checkpoint_final.pth");
        let ex = CheckpointExport {
            plans: serde_json::json!({"plans_name": "x"}),
            configuration: cfg.into(),
            fold: "0".into(),
            dataset_json: serde_json::json!({"labels": {"background": 0}}),
            trainer_name: "nnUNetTrainer".into(),
            inference_allowed_mirroring_axes: vec![0, 1],
            current_epoch: 3,
        };
        write_checkpoint(&p, &vs, opts.norm, &ex).unwrap();
        let (info2, w) = read_checkpoint(&p).unwrap();
        assert_eq!(info2.configuration.as_deref(), Some(cfg));
        assert_eq!(info2.inference_allowed_mirroring_axes, Some(vec![0, 1]));
        assert_eq!(info2.current_epoch, Some(3));
        let a = PthArchive::open(&p).unwrap();
        let keys: BTreeSet<String> = a
            .root
            .get("network_weights")
            .unwrap()
            .as_dict()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, want);
        for (name, t) in vs.variables() {
            let got: Vec<f32> = Vec::try_from(t.contiguous().view([-1])).unwrap();
            assert_eq!(w[&name].1, got, "{name}");
        }
    }
}

#[test]
fn refuses_a_checkpoint_of_another_network() {
    // The 2d weights against the resenc architecture.
    let e = load_network(&fixture("2d").join("fold_0/checkpoint_final.pth"), &arch_of("3d_resenc"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit the network"), "{e}");
}

#[test]
fn pretrained_mode_keeps_fresh_heads_on_label_mismatch() {
    let (_, w) = read_checkpoint(&fixture("2d").join("fold_0/checkpoint_final.pth")).unwrap();
    let arch = arch_of("2d");
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = build_network(&vs.root(), &arch, 1, 5, &net_options_of(&arch).unwrap()).unwrap();
    let head_before: Vec<f32> =
        Vec::try_from(vs.variables()["decoder.seg_layers.1.weight"].contiguous().view([-1])).unwrap();
    assert!(load_weights(&vs, &w, LoadMode::Exact, Path::new("x")).is_err());
    let r = load_weights(&vs, &w, LoadMode::Pretrained, Path::new("x")).unwrap();
    assert_eq!(r.skipped.len(), 4, "{:?}", r.skipped);
    let head_after: Vec<f32> =
        Vec::try_from(vs.variables()["decoder.seg_layers.1.weight"].contiguous().view([-1])).unwrap();
    assert_eq!(head_before, head_after);
    let enc: Vec<f32> =
        Vec::try_from(vs.variables()["encoder.stages.0.0.convs.0.conv.weight"].contiguous().view([-1])).unwrap();
    assert_eq!(enc, w["encoder.stages.0.0.convs.0.conv.weight"].1);
}

#[test]
fn refuses_unsupported_architectures() {
    let mut a = arch_of("2d");
    a.arch_kwargs.dropout_op = Some("torch.nn.Dropout2d".into());
    assert!(net_options_of(&a).unwrap_err().contains("dropout"));
    let mut a = arch_of("2d");
    a.network_class_name = "dynamic_network_architectures.architectures.primus.PrimusM".into();
    assert!(net_options_of(&a).unwrap_err().contains("PrimusM"));
    let mut a = arch_of("2d");
    a.arch_kwargs.nonlin = "torch.nn.GELU".into();
    assert!(net_options_of(&a).unwrap_err().contains("GELU"));
}

#[test]
fn hostile_checkpoints_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("2d").join("fold_0/checkpoint_final.pth")).unwrap();
    // Truncated.
    let p = dir.path().join("truncated.pth");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = read_checkpoint(&p).unwrap_err().to_string();
    assert!(e.contains("truncated.pth") && e.contains("zip"), "{e}");
    // A pickle that calls os.system, packed like a checkpoint.
    let p = dir.path().join("hostile.pth");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        z.start_file("archive/data.pkl", zip::write::FileOptions::default()).unwrap();
        z.write_all(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.").unwrap();
        z.finish().unwrap();
    }
    let e = read_checkpoint(&p).unwrap_err().to_string();
    assert!(e.contains("hostile.pth") && e.contains("posix.system"), "{e}");
    // Oversized: a storage that declares more elements than it holds.
    let mut a = PthArchive::open(&fixture("2d").join("fold_0/checkpoint_final.pth")).unwrap();
    let mut root = a.root.clone();
    if let Value::Dict { items, .. } = &mut root {
        for (k, v) in items.iter_mut() {
            if k.as_str() == Some("network_weights") {
                if let Value::Dict { items: w, .. } = v {
                    if let Value::Tensor(t) = &mut w[0].1 {
                        t.storage_numel *= 1000;
                        t.shape[0] *= 1000;
                    }
                }
            }
        }
    }
    let w = root.get("network_weights").unwrap().clone();
    let first = match &w.as_dict().unwrap()[0].1 {
        Value::Tensor(t) => t.clone(),
        _ => unreachable!(),
    };
    let e = a.tensor_f32(&first).unwrap_err().to_string();
    assert!(e.contains("holds") && e.contains("declares"), "{e}");
}
