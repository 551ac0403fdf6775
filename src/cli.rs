//! Command-line interface definitions (clap). Each subcommand is implemented in `commands/`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pipeline",
    version,
    about = "nnU-Net v2 as a reproducible, content-addressed pipeline",
    propagate_version = true
)]
pub struct Cli {
    /// Log level filter (also RUST_LOG), e.g. info, debug, pipeline=debug.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    /// Logs as JSON lines on stderr.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by the commands that read a pipeline file.
#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file.
    #[arg(short = 'f', long = "file", default_value = "pipeline.yaml")]
    pub file: PathBuf,
    /// Override a value: STAGE.PARAM=V, NAME=V (global param), device=V; `a,b` sweeps.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Only this entry of the pipeline's `variants:`.
    #[arg(long = "variant", value_name = "NAME")]
    pub variant: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pipeline: compute what is stale, reuse the rest from the cache.
    Run(RunArgs),
    /// Show fresh / stale / missing per stage item, and why.
    Status(StatusArgs),
    /// Print the stage graph (text or Graphviz DOT).
    Dag(DagArgs),
    /// Show the artifacts (paths and manifests) of a stage.
    Show(ShowArgs),
    /// Remove artifacts no run refers to any more.
    Gc(GcArgs),
    /// Re-verify every cached artifact (size and blake3 of each file) and evict damaged ones.
    Fsck(FsckArgs),
    /// Write a synthetic nnU-Net raw dataset (for demos and tests).
    Synth(SynthArgs),
    /// Check a raw dataset like nnU-Net's verify_dataset_integrity.
    Verify(VerifyArgs),
    /// Score predictions against references (Dice, IoU, ...), like nnUNetv2_evaluate_folder.
    Evaluate(EvaluateArgs),
    /// Segment new images with a trained run or an exported model bundle.
    Predict(PredictArgs),
    /// Write a self-contained model bundle from a run.
    Export(ExportArgs),
    /// Write an HTML + Markdown report of a run, or the comparison page of a sweep folder.
    Report(ReportArgs),
    /// Compare run folders on one page (the first is the baseline).
    Compare(CompareArgs),
    /// Benchmarks (printed figures; compare with the peer through bench/run.sh).
    Bench(BenchArgs),
    /// Cancel the cluster jobs a run submitted.
    Cancel(CancelArgs),
    /// Which device `auto` picks, and whether libtorch's CUDA backend loads and sees GPUs.
    Device(DeviceArgs),
    /// (internal) Build one unit; used by cluster jobs.
    #[command(hide = true)]
    ExecUnit(ExecUnitArgs),
}

#[derive(Args, Debug)]
pub struct DeviceArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Run only up to (and including) this stage.
    #[arg(long)]
    pub until: Option<String>,
    /// Run only this stage (its upstream must be cached).
    #[arg(long)]
    pub only: Option<String>,
    /// Rebuild this stage even if cached (repeatable).
    #[arg(long)]
    pub force: Vec<String>,
    /// CPU budget for parallel units (default: the machine's cores).
    #[arg(short = 'j', long)]
    pub jobs: Option<usize>,
    /// Memory budget, e.g. 8G, 512M or 50%: fewer large cases run at once and preprocessing
    /// streams in smaller slabs to stay within it (default: 3/4 of the machine's memory).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Executor: local or slurm (default: the file's `executor`).
    #[arg(long)]
    pub executor: Option<String>,
    /// With the slurm executor: return after submitting.
    #[arg(long)]
    pub detach: bool,
    /// Refuse instead of waiting when another run holds the cache lock.
    #[arg(long)]
    pub no_wait: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Say which key component changed for stale units.
    #[arg(long)]
    pub why: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DagArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Graphviz DOT instead of text.
    #[arg(long)]
    pub dot: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Stage name.
    pub stage: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Only print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Only report damaged artifacts; evict nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (an nnU-Net v2 raw dataset).
    pub out: PathBuf,
    #[arg(long, default_value_t = 12)]
    pub cases: usize,
    /// Held-out cases written to imagesTs/labelsTs.
    #[arg(long, default_value_t = 0)]
    pub test_cases: usize,
    /// CT or MR.
    #[arg(long, default_value = "CT")]
    pub modality: String,
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Number of foreground labels.
    #[arg(long, default_value_t = 2)]
    pub labels: usize,
    /// Spacing z,y,x in mm.
    #[arg(long, default_value = "3.0,0.8,0.8")]
    pub spacing: String,
    /// Approximate shape z,y,x in voxels.
    #[arg(long)]
    pub shape: Option<String>,
    /// Relative per-case jitter of the spacing (0 = every case has exactly `--spacing`).
    #[arg(long, default_value_t = 0.05)]
    pub spacing_jitter: f64,
    /// Lesion (even label) size relative to the default: radii 0.35-0.5 of the organ's x SCALE.
    #[arg(long, default_value_t = 1.0)]
    pub lesion_scale: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dataset name written to dataset.json.
    #[arg(long)]
    pub name: Option<String>,
    /// Image format: nii.gz, nii, mha, mhd, nrrd, nhdr, png, bmp, tif (png/bmp: 2D cases; 3
    /// channels make RGB .png files; tif: 3D stacks with the CASE.json spacing sidecar).
    #[arg(long, default_value = "nii.gz")]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Raw dataset folder (nnU-Net v2 raw or MSD).
    pub dataset: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Folder of reference segmentations.
    pub reference: PathBuf,
    /// Folder of predicted segmentations (same file names).
    pub prediction: PathBuf,
    /// Foreground labels to score, e.g. 1,2 (default: from --dataset-json, else all found).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<i32>,
    /// Ignore label (voxels excluded from scoring).
    #[arg(long)]
    pub ignore: Option<i32>,
    /// A dataset.json giving labels / regions / ignore.
    #[arg(long)]
    pub dataset_json: Option<PathBuf>,
    /// Where to write summary.json (default: PRED/summary.json).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Input images: a folder with CASE_0000.nii.gz files, or a single file.
    #[arg(short = 'i', long)]
    pub input: PathBuf,
    /// Output folder.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// A run folder (runs/NAME) to take the chosen model from.
    #[arg(long, conflicts_with = "model")]
    pub run: Option<PathBuf>,
    /// A model bundle written by `pipeline export`, or an nnU-Net v2 model folder
    /// (`Trainer__Plans__Configuration/`, or a results folder with `inference_information.json`).
    /// Two nnU-Net model folders: an ensemble (probabilities averaged).
    #[arg(long, num_args = 1..=2)]
    pub model: Vec<PathBuf>,
    /// Folds to use (default: all in the model), e.g. 0,1 or all.
    #[arg(long, value_delimiter = ',')]
    pub folds: Vec<String>,
    /// nnU-Net model folders: which checkpoint of each fold, final or best.
    #[arg(long, default_value = "final")]
    pub checkpoint: String,
    /// Sliding-window step as a fraction of the patch size (nnU-Net's -step_size).
    #[arg(long, default_value_t = 0.5)]
    pub step_size: f64,
    /// Accumulate tiles in f16 as nnU-Net does (default f32, more exact); for parity checks.
    #[arg(long)]
    pub fp16_accumulation: bool,
    /// Post-processing to apply: nnU-Net's postprocessing.pkl or our postprocessing.json
    /// (default: the model's own, if any).
    #[arg(long)]
    pub postprocessing: Option<PathBuf>,
    /// Disable mirroring test-time augmentation.
    #[arg(long)]
    pub no_tta: bool,
    /// Write probabilities too.
    #[arg(long)]
    pub save_probabilities: bool,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Skip the post-processing decided at training time.
    #[arg(long)]
    pub no_postprocessing: bool,
    /// Resident-memory budget of the process, e.g. 4G, 1500M (default: none). The
    /// sliding-window batch is chosen to fit; a case that cannot fit is refused up front.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

/// Parses a byte size: a number with an optional unit K, M, G, T (powers of 1024; a trailing
/// `B` or `iB` is accepted), e.g. `4G`, `1.5GiB`, `512M`, `1000000`. Hand-written: one flag does
/// not justify a dependency.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 4G, 512M)"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        other => return Err(format!("'{s}': unknown unit '{other}' (use K, M, G or T)")),
    };
    let bytes = v * mult as f64;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!("'{s}' is not a positive size"));
    }
    Ok(bytes as u64)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run folder (default: the run of ./pipeline.yaml).
    pub run: Option<PathBuf>,
    /// Output: a bundle (.tar); with `--format nnunet` an nnU-Net v2 model folder (for an
    /// ensemble: a results folder with one model folder per member and
    /// `inference_information.json`).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// bundle (our .tar) or nnunet (model folders nnUNetv2_predict reads).
    #[arg(long, default_value = "bundle", value_parser = ["bundle", "nnunet"])]
    pub format: String,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run folder, or a sweep folder (with sweep.json) for the comparison of its variants
    /// (default: the run of ./pipeline.yaml).
    pub run: Option<PathBuf>,
    /// Output folder for report.html / report.md (default: RUN/report).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print the report's summary as JSON (what it found, what is missing, unreadable files).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run folders; the first is the baseline.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Output folder for report.html / report.md / comparison.json.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Image read throughput over a dataset (any format; `nifti` is an alias).
    #[command(alias = "nifti")]
    Read {
        dataset: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Overhead of `pipeline run` when everything is cached.
    Overhead {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(long)]
        json: bool,
    },
    /// Single-threaded augmentation seconds per batch from a preprocessed store.
    Augment {
        /// Run folder with a resample stage output.
        run: PathBuf,
        #[arg(long, default_value = "3d_fullres")]
        configuration: String,
        #[arg(long, default_value_t = 10)]
        batches: usize,
        #[arg(long)]
        json: bool,
    },
    /// Sliding-window prediction of raw cases with the planned network (random weights, as the
    /// peer's nnunet_predict.py), without and with mirroring.
    Predict {
        /// Run folder with a plan stage output.
        run: PathBuf,
        #[arg(long, default_value = "3d_fullres")]
        configuration: String,
        /// Folder of raw images (nnU-Net naming); default: the dataset's test images.
        #[arg(long)]
        images: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        cases: usize,
        /// Mirroring passes to time: both (without, then with), off, on.
        #[arg(long, default_value = "both", value_parser = ["both", "off", "on"])]
        tta: String,
        /// Resident-memory budget, as `pipeline predict --memory`.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        memory: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// One training step (default: at the planned batch size).
    Step {
        run: PathBuf,
        #[arg(long, default_value = "3d_fullres")]
        configuration: String,
        /// Batch size (default: the plan's).
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("512 MB"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
    }
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

#[derive(Args, Debug)]
pub struct ExecUnitArgs {
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// The unit id, e.g. `train[configuration=2d,fold=0]`.
    #[arg(long)]
    pub unit: String,
    /// The run name (variant) the unit belongs to.
    #[arg(long)]
    pub run: Option<String>,
}
