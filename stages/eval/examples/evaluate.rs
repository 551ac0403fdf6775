//! `evaluate REF_DIR PRED_DIR [--labels 1,2] [--ignore K] [--json] [--output FILE]`: the same
//! interface as `pipeline evaluate`, for checking this crate alone
//! (`scripts/compare_evaluate.py --pipeline <this example>`).

use nnunet_eval::classes::labels;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "evaluate").collect();
    let mut pos = vec![];
    let (mut lab, mut ignore, mut json, mut output) = (vec![1, 2], None, false, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--labels" => {
                lab = it.next().unwrap_or_default().split(',').filter_map(|s| s.trim().parse().ok()).collect()
            }
            "--ignore" => ignore = it.next().and_then(|s| s.parse().ok()),
            "--json" => json = true,
            "--output" | "-o" => output = it.next().map(PathBuf::from),
            _ => pos.push(PathBuf::from(a)),
        }
    }
    if pos.len() != 2 {
        eprintln!("usage: evaluate REF_DIR PRED_DIR [--labels 1,2] [--ignore K] [--json] [--output FILE]");
        std::process::exit(2);
    }
    match nnunet_eval::evaluate_folder(&pos[0], &pos[1], &labels(&lab), ignore, ".nii.gz") {
        Ok(s) => {
            if let Some(o) = output {
                if let Err(e) = s.write_json(&o) {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
            if json {
                println!("{}", s.to_json_string());
            } else {
                for (c, m) in s.classes.iter().zip(&s.mean) {
                    println!("{c}: Dice {:.4}", m.dice);
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
