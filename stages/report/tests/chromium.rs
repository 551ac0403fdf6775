//! Renders a fake run's `report.html` in headless Chromium: the page loads, its DOM after
//! rendering holds the run's numbers (exact values in `data-v`), and a screenshot is a real,
//! non-blank page. Skipped (with a message) where `/usr/bin/chromium` is not installed.

use flate2::read::ZlibDecoder;
use nnunet_io::table::Table;
use nnunet_report::fixture::{self, html_table};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs chromium with the hermetic flags plus `extra`, killing it after two minutes.
fn chromium(profile: &Path, extra: &[String], stdout: &Path) -> std::process::ExitStatus {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(extra.iter().cloned());
    let mut child = Command::new(CHROMIUM)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Decodes an 8-bit RGB or RGBA PNG (what Chromium writes) to RGB rows.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (mut w, mut h, mut ctype) = (0usize, 0usize, 0u8);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                h = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                assert_eq!(data[12], 0, "interlaced PNG");
                ctype = data[9];
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        i += 12 + len;
    }
    let bpp = match ctype {
        2 => 3,
        6 => 4,
        other => panic!("colour type {other}"),
    };
    let mut raw = Vec::new();
    ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = w * bpp;
    assert_eq!(raw.len(), h * (stride + 1));
    let mut prev = vec![0u8; stride];
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        let f = raw[y * (stride + 1)];
        let mut cur = raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)].to_vec();
        for x in 0..stride {
            let a = if x >= bpp { cur[x - bpp] as i16 } else { 0 };
            let b = prev[x] as i16;
            let c = if x >= bpp { prev[x - bpp] as i16 } else { 0 };
            let add = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            cur[x] = cur[x].wrapping_add(add as u8);
        }
        px.extend(cur.chunks(bpp).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (w, h, px)
}

fn url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

#[test]
fn report_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        return nnunet_io::testing::skip("chromium not installed (apt-get install chromium)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture::build(&tmp.path().join("run").tap_mkdir()).unwrap();
    let out = tmp.path().join("report");
    let summary = nnunet_report::write_report(&run.run_dir, &out).unwrap();

    // The DOM after rendering holds the numbers of the run's Parquet files.
    let dom_path = tmp.path().join("dom.html");
    let status = chromium(&tmp.path().join("profile-dom"), &["--dump-dom".into(), url(&summary.html)], &dom_path);
    assert!(status.success(), "chromium --dump-dom: {status}");
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert!(dom.contains("<svg"), "inline SVG charts are in the DOM");
    assert!(dom.contains("data:image/png;base64,"), "example slices are in the DOM");
    let ranking = Table::read_parquet(&run.run_dir.join("select/ranking.parquet")).unwrap();
    let rows = html_table(&dom, "selection-ranking").expect("ranking table in the DOM");
    assert_eq!(rows.len(), ranking.nrows());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[1].text, ranking.str("name").unwrap()[i]);
        assert_eq!(row[3].value, Some(ranking.f64("foreground_dice").unwrap()[i]));
        assert_eq!(row[3].text, nnunet_report::fmt::score(ranking.f64("foreground_dice").unwrap()[i]));
    }
    let metrics = Table::read_parquet(&run.run_dir.join("evaluate/metrics.parquet")).unwrap();
    let rows = html_table(&dom, "test-cases").expect("test-set table in the DOM");
    let (case, class, dice) =
        (metrics.str("case").unwrap(), metrics.str("class").unwrap(), metrics.f64("Dice").unwrap());
    for row in &rows {
        for (j, k) in ["1", "2"].iter().enumerate() {
            let i = (0..case.len()).find(|&i| case[i] == format!("{}.nii.gz", row[0].text) && class[i] == *k).unwrap();
            let want = dice[i];
            assert!(row[1 + j].value.is_some_and(|v| v == want || (v.is_nan() && want.is_nan())), "{row:?}");
        }
    }

    // A screenshot of the rendered page: exists, not blank, styled.
    let shot: PathBuf = tmp.path().join("report.png");
    let status = chromium(
        &tmp.path().join("profile-shot"),
        &[format!("--screenshot={}", shot.display()), "--window-size=1280,2000".into(), url(&summary.html)],
        &tmp.path().join("shot.log"),
    );
    assert!(status.success(), "chromium --screenshot: {status}");
    let bytes = std::fs::read(&shot).expect("screenshot written");
    assert!(bytes.len() > 20_000, "screenshot is only {} bytes", bytes.len());
    let (w, h, px) = decode_png(&bytes);
    assert_eq!((w, h), (1280, 2000));
    let non_white = px.iter().filter(|p| p.iter().any(|&c| c < 235)).count();
    assert!(non_white * 50 > px.len(), "page looks blank: {non_white} of {} pixels not white", px.len());
    let header = px.iter().filter(|p| **p == [0x1d, 0x35, 0x57]).count();
    assert!(header > 10_000, "the header colour is missing ({header} px): CSS not applied?");
    let mut colours: Vec<[u8; 3]> = px.iter().map(|p| [p[0] >> 3, p[1] >> 3, p[2] >> 3]).collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 40, "only {} colours", colours.len());
    println!("screenshot {} ({} bytes), {non_white} non-white px", shot.display(), bytes.len());
}

/// The sweep comparison page of two fake runs renders: the table's cells in the DOM carry the
/// numbers of `comparison.json`, the learning-curve charts are there.
#[test]
fn sweep_comparison_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        println!("SKIP: chromium not installed (apt-get install chromium)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut variants = Vec::new();
    for name in ["default", "batch_norm"] {
        let run = fixture::build(&tmp.path().join(name).tap_mkdir()).unwrap();
        variants.push(nnunet_report::sweep::VariantRef {
            label: name.to_string(),
            run_dir: run.run_dir,
            overrides: if name == "default" { vec![] } else { vec![("train.norm".into(), "batch".into())] },
        });
    }
    let input = nnunet_report::sweep::SweepInput { title: "Sweep chromium".into(), variants };
    let out = tmp.path().join("cmp");
    let rows = nnunet_report::sweep::write_comparison(&input, &out).unwrap();
    let dom_path = tmp.path().join("dom.html");
    let status =
        chromium(&tmp.path().join("profile"), &["--dump-dom".into(), url(&out.join("report.html"))], &dom_path);
    assert!(status.success(), "chromium --dump-dom: {status}");
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    let table = html_table(&dom, "sweep-table").expect("sweep table in the DOM");
    assert_eq!(table.len(), rows.len());
    for (r, cells) in rows.iter().zip(&table) {
        assert_eq!(cells[0].text, r.variant);
        assert_eq!(cells[2].text, r.configuration);
        let mean = 4 + r.dice_per_class.len();
        assert_eq!(cells[mean].value, Some(r.dice_mean), "{cells:?}");
    }
    assert!(dom.matches("<svg").count() >= 2, "learning curves");
    assert!(dom.contains("train.norm=batch"));
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
