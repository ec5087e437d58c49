//! The `saekit` command: the quickstart report, and the workspace catalog from a terminal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use saekit::catalog::{DatasetFilter, DatasetStatus, Workspace};
use saekit::display::Render;
use saekit::hub::{Hub, Selection};
use saekit::jobs::TerminalBar;
use saekit::report::Report;
use saekit::stats::DatasetStats;
use saekit::tokenize::engine::tokenize_source;
use saekit::tokenize::{TokenizeParams, Tokenizer};
use saekit::{Error, Result, Source};

const USAGE: &str = "\
saekit: data curation and SAE training toolkit

usage: saekit [--workspace DIR] COMMAND [ARGS]

commands:
  quickstart [--out FILE]         add the embedded corpus to the workspace and write an HTML report
  gallery [--out FILE]            every chart kind on one page, with made-up data
                                  (default FILE: saekit-report.html)
  add NAME PATH... [OPTIONS]      register files (JSONL, CSV, Parquet, a folder of .txt/.md) as a dataset
  import NAME PATH... [OPTIONS]   copy files into the workspace as Parquet and register them
      --text COLUMN               the column holding the text (default: text)
      --template TEMPLATE         build the text from columns, e.g. '{instruction}\\n\\n{output}'
      --skip-bad-records          skip and count unreadable records instead of stopping
  list [--status S] [--tag T] [--source S] [--name TEXT]
  show NAME                       a dataset's card
  tag NAME TAG...                 set a dataset's tags
  delete NAME [--cascade]         delete a dataset and the files saekit made for it; one that was
                                  tokenized is refused unless --cascade (which deletes those too)
  lineage NAME                    what a dataset was made from and what was made from it
  tokenize DATASET [OPTIONS]      tokenize a dataset into a token store registered in the catalog
  tokenize --out DIR PATH... [OPTIONS] [--json]
                                  tokenize files into a token store in DIR (no workspace)
      --tokenizer gpt2|FILE       the embedded GPT-2 tokenizer (default) or a tokenizer.json
      --max-length N --stride N   windows over long documents (defaults 1024 and 512)
      --pack N                    pack documents into N-token sequences (EOS between, BOS first)
      --add-bos --add-eos --min-length N --threads N
  schema PATH...                  the schema of files, with null counts on a sample
  stats PATH... [OPTIONS]         statistics of files' documents
  hub info REPO [--revision R]    a Hub dataset's configs, splits and files with sizes
  hub download REPO [OPTIONS]     show the download plan, fetch the files into the HF cache (resuming what
                                  is partial) and register them as a dataset (default NAME: REPO)
      --config C --split S --revision R --name NAME --max-rows N
      --files GLOB[,GLOB...]      only these files of the split
      --text COLUMN --template T  where the text comes from (default: the `text` column)
      --plan-only                 show the plan and stop
  hub tokenizer REPO              fetch a model's tokenizer.json into the HF cache and describe it
      (the Hub commands honour HF_ENDPOINT, HF_TOKEN or the token file, HF_HOME / HF_HUB_CACHE and
      HF_HUB_OFFLINE=1, as huggingface_hub does)
  tokenizer show gpt2|FILE        a tokenizer's card, with its identity (what decides the ids it gives)
  model show MODEL                a model's card (MODEL: a folder in the HF layout, or a Hub repo id)
  model run MODEL --hooks H,H... --out FILE.safetensors [OPTIONS]
                                  one forward pass; writes the hooks' activations (and what else is asked)
      --ids '1,2,3;4,5'           token ids, sequences separated by `;` (right-padded), or
      --text TEXT                 a text encoded with the model's tokenizer and special tokens (repeatable)
      --logits --loss --embedding also write the logits, the next-token loss, the sentence embedding (BERT)
      --scale HOOK=F              multiply the activations at HOOK by F on the way (repeatable)
      --dtype f32|bf16|f16        compute in this dtype (default f32)
  model bench MODEL [--batch B --seq S --hook H --reps N]
                                  forward throughput to a hook (default: the middle block's resid_post)

The workspace is --workspace DIR, else $SAEKIT_HOME, else ~/.saekit.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Pulls `--flag VALUE` out of `args`.
fn take_value(args: &mut Vec<String>, flag: &str) -> Result<Option<String>> {
    let Some(i) = args.iter().position(|a| a == flag) else { return Ok(None) };
    if i + 1 >= args.len() {
        return Err(Error::InvalidArgument(format!("{flag} needs a value")));
    }
    let value = args.remove(i + 1);
    args.remove(i);
    Ok(Some(value))
}

/// Pulls `--flag` out of `args`.
fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let found = args.iter().position(|a| a == flag);
    if let Some(i) = found {
        args.remove(i);
    }
    found.is_some()
}

fn source_from(args: &mut Vec<String>) -> Result<Source> {
    let text = take_value(args, "--text")?;
    let template = take_value(args, "--template")?;
    let skip = take_flag(args, "--skip-bad-records");
    if let Some(unknown) = args.iter().find(|a| a.starts_with("--")) {
        return Err(Error::InvalidArgument(format!("unknown option {unknown}\n\n{USAGE}")));
    }
    if args.is_empty() {
        return Err(Error::InvalidArgument(format!("no files given\n\n{USAGE}")));
    }
    let mut source = Source::open_many(args.iter())?;
    if let Some(text) = text {
        source = source.text_column(text);
    }
    if let Some(template) = template {
        source = source.text_template(template.replace("\\n", "\n"));
    }
    if skip {
        source = source.skip_bad_records();
    }
    Ok(source)
}

fn run(mut args: Vec<String>) -> Result<()> {
    let workspace_dir = take_value(&mut args, "--workspace")?.map(PathBuf::from);
    let open_workspace = || match &workspace_dir {
        Some(dir) => Workspace::open(dir),
        None => Workspace::open_default(),
    };
    if args.is_empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
        println!("{USAGE}");
        return Ok(());
    }
    let command = args.remove(0);
    match command.as_str() {
        "gallery" => {
            let out = take_value(&mut args, "--out")?.unwrap_or_else(|| "saekit-charts.html".into());
            gallery().write_html(std::path::Path::new(&out))?;
            println!("wrote {out}");
            Ok(())
        }
        "quickstart" => {
            let out = take_value(&mut args, "--out")?.unwrap_or_else(|| "saekit-report.html".into());
            let ws = open_workspace()?;
            quickstart(&ws, &PathBuf::from(out))
        }
        "add" | "import" => {
            if args.is_empty() {
                return Err(Error::InvalidArgument(format!("{command} needs a NAME and files\n\n{USAGE}")));
            }
            let name = args.remove(0);
            let source = source_from(&mut args)?;
            let ws = open_workspace()?;
            let job = if command == "add" {
                ws.add_dataset_job(&name, &source)
            } else {
                ws.import_dataset_job(&name, &source)
            };
            job.subscribe(Arc::new(TerminalBar::new()));
            let dataset = job.wait()?;
            println!("{}", dataset.bundle().plain());
            Ok(())
        }
        "list" => {
            let filter = DatasetFilter {
                status: take_value(&mut args, "--status")?.map(|s| s.parse::<DatasetStatus>()).transpose()?,
                tag: take_value(&mut args, "--tag")?,
                source: take_value(&mut args, "--source")?,
                name_contains: take_value(&mut args, "--name")?,
            };
            println!("{}", open_workspace()?.find(&filter)?.bundle().plain());
            Ok(())
        }
        "show" | "delete" | "tag" | "lineage" => {
            let cascade = take_flag(&mut args, "--cascade");
            if args.is_empty() {
                return Err(Error::InvalidArgument(format!("{command} needs a dataset NAME")));
            }
            let name = args.remove(0);
            let ws = open_workspace()?;
            match command.as_str() {
                "show" => println!("{}", ws.dataset(&name)?.bundle().plain()),
                "tag" => {
                    let tags: Vec<&str> = args.iter().map(String::as_str).collect();
                    println!("{}", ws.tag(&name, &tags)?.bundle().plain());
                }
                "lineage" => println!("{}", ws.dataset(&name)?.lineage()?.bundle().plain()),
                _ if cascade => {
                    ws.delete_dataset_cascade(&name)?;
                    println!("deleted {name} and what was made from it");
                }
                _ => {
                    ws.delete_dataset(&name)?;
                    println!("deleted {name}");
                }
            }
            Ok(())
        }
        "tokenize" => tokenize_command(args, open_workspace),
        "hub" => hub_command(args, open_workspace),
        "model" => model_command(args),
        "tokenizer" => {
            let [sub, spec] = args.as_slice() else { return Err(Error::InvalidArgument(USAGE.into())) };
            if sub != "show" {
                return Err(Error::InvalidArgument(USAGE.into()));
            }
            let tokenizer = if spec == "gpt2" { Tokenizer::gpt2()? } else { Tokenizer::from_file(spec)? };
            println!("{}", tokenizer.bundle().plain());
            Ok(())
        }
        "schema" => {
            let source = source_from(&mut args)?;
            println!("{}", source.schema()?.bundle().plain());
            Ok(())
        }
        "stats" => {
            let source = source_from(&mut args)?;
            println!("{}", DatasetStats::compute(source.documents()?)?.bundle().plain());
            Ok(())
        }
        other => Err(Error::InvalidArgument(format!("unknown command `{other}`\n\n{USAGE}"))),
    }
}

fn model_command(mut args: Vec<String>) -> Result<()> {
    use saekit::models::{DType, Forward, Model, ModelOptions, TokenBatch};
    let usage = || Error::InvalidArgument(format!("usage: saekit model show MODEL | model run MODEL ...\n\n{USAGE}"));
    if args.is_empty() {
        return Err(usage());
    }
    let sub = args.remove(0);
    let dtype = match take_value(&mut args, "--dtype")?.as_deref() {
        None | Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        Some("f16") => DType::F16,
        Some(other) => return Err(Error::InvalidArgument(format!("--dtype {other}: expected f32, bf16 or f16"))),
    };
    let options = ModelOptions::default().dtype(dtype);
    match sub.as_str() {
        "show" => {
            let [spec] = args.as_slice() else { return Err(usage()) };
            println!("{}", Model::load_with(spec, &options)?.bundle().plain());
            Ok(())
        }
        "run" => {
            let hooks = take_value(&mut args, "--hooks")?;
            let out =
                take_value(&mut args, "--out")?.ok_or_else(|| Error::InvalidArgument("--out FILE is needed".into()))?;
            let ids = take_value(&mut args, "--ids")?;
            let mut texts = Vec::new();
            while let Some(text) = take_value(&mut args, "--text")? {
                texts.push(text);
            }
            let mut scales = Vec::new();
            while let Some(scale) = take_value(&mut args, "--scale")? {
                let (hook, factor) = scale
                    .split_once('=')
                    .and_then(|(h, f)| f.parse::<f64>().ok().map(|f| (h.to_string(), f)))
                    .ok_or_else(|| Error::InvalidArgument(format!("--scale {scale}: expected HOOK=FACTOR")))?;
                scales.push((hook, factor));
            }
            let mut forward = Forward::new();
            if take_flag(&mut args, "--logits") {
                forward = forward.logits();
            }
            if take_flag(&mut args, "--loss") {
                forward = forward.loss();
            }
            if take_flag(&mut args, "--embedding") {
                forward = forward.embedding();
            }
            let [spec] = args.as_slice() else { return Err(usage()) };
            let model = Model::load_with(spec, &options)?;
            let batch = match (ids, texts.is_empty()) {
                (Some(ids), true) => {
                    let sequences = ids
                        .split(';')
                        .map(|s| {
                            s.split(',')
                                .map(|i| i.trim().parse::<u32>())
                                .collect::<std::result::Result<Vec<u32>, _>>()
                                .map_err(|e| Error::InvalidArgument(format!("--ids {s:?}: {e}")))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    TokenBatch::new(&sequences)?
                }
                (None, false) => model.encode(&texts)?,
                _ => return Err(Error::InvalidArgument("give either --ids or --text".into())),
            };
            if let Some(hooks) = hooks {
                forward = forward.hooks(hooks.split(',').map(str::trim).filter(|h| !h.is_empty()));
            }
            for (hook, factor) in scales {
                forward = forward.replace(hook, move |x| Ok((x * factor)?));
            }
            let output = model.run(&batch, &forward)?;
            output.save(std::path::Path::new(&out))?;
            println!("{}", output.bundle().plain());
            Ok(())
        }
        "bench" => {
            let number = |args: &mut Vec<String>, flag: &str, default: usize| -> Result<usize> {
                take_value(args, flag)?.map_or(Ok(default), |v| {
                    v.parse().map_err(|_| Error::InvalidArgument(format!("{flag} {v}: expected a number")))
                })
            };
            let batch = number(&mut args, "--batch", 8)?;
            let seq = number(&mut args, "--seq", 128)?;
            let reps = number(&mut args, "--reps", 5)?.max(1);
            let hook = take_value(&mut args, "--hook")?;
            let [spec] = args.as_slice() else { return Err(usage()) };
            let model = Model::load_with(spec, &options)?;
            let hook = hook.unwrap_or_else(|| format!("blocks.{}.hook_resid_post", model.info().layers / 2));
            println!("{}", model_bench(&model, &hook, batch, seq, reps)?);
            Ok(())
        }
        _ => Err(usage()),
    }
}

/// Forward throughput to one hook on random ids (fixed seed): one warm-up, then `reps` timed passes; one
/// JSON line, as bench/models_bench.py reads it.
fn model_bench(model: &saekit::models::Model, hook: &str, batch: usize, seq: usize, reps: usize) -> Result<String> {
    use saekit::models::{Forward, TokenBatch};
    let vocab = model.info().vocab_size as u64;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab) as u32
        })
        .collect();
    let tokens = TokenBatch::rectangular(ids, batch, seq)?;
    let forward = Forward::new().hook(hook);
    model.run(&tokens, &forward)?;
    let mut seconds = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = std::time::Instant::now();
        model.run(&tokens, &forward)?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(serde_json::json!({
        "impl": "saekit", "model": model.name(), "hook": hook, "batch": batch, "seq": seq,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(), "dtype": model.info().dtype,
        "tokens_per_s": (batch * seq) as f64 / median, "seconds": seconds,
    })
    .to_string())
}

/// The main job: the embedded corpus into the workspace, its schema and statistics, and an HTML report.
/// Every chart kind on one page, with made-up data: for looking at saekit's displays (and for the
/// screenshot tests, which look at them in light and dark themes).
fn gallery() -> Report {
    use saekit::display::{BarChart, ChartGrid, Histogram, LineChart, Scatter};
    let mut report = Report::new("saekit charts");
    let bins: Vec<(String, u64)> = (0..16)
        .map(|i| (format!("{}", 1u64 << i), ((i as f64 - 7.5).powi(2) * -40.0 + 2600.0).max(3.0) as u64))
        .collect();
    report.section("Histogram", &Histogram::new("Document length", "characters (bin start)", bins.clone()));
    report.section("Histogram, log counts", &Histogram::new("Document length", "characters", bins).log_count(true));
    let loss = |scale: f64, noise: f64| -> Vec<(f64, f64)> {
        (0..2_000)
            .map(|i| (i as f64 * 50.0, scale / (1.0 + i as f64 / 80.0) + noise * ((i * 7919 % 97) as f64 / 97.0)))
            .collect()
    };
    report.section(
        "Line chart",
        &LineChart::new("Loss", "tokens", "MSE")
            .series("train", loss(2.0, 0.3))
            .series("eval", loss(2.2, 0.05))
            .smoothed(0.9),
    );
    let zipf: Vec<(f64, f64)> = (1..20_000).map(|r| (r as f64, 5e4 / (r as f64).powf(1.05))).collect();
    report.section(
        "Log axes",
        &LineChart::new("Rank / frequency", "rank", "count").series("tokens", zipf).log_x(true).log_y(true),
    );
    let bars = BarChart::new("Mix", "documents")
        .bar("HuggingFaceFW/fineweb-edu (sample-10BT)", 61_000.0)
        .bar("code: bigcode/the-stack-smol", 24_500.0)
        .bar("math", 9_800.0)
        .bar("safety-relevant conversations", 4_700.0);
    report.section("Bar chart", &bars);
    let frontier = Scatter::new("L0 / explained variance", "L0", "explained variance")
        .series(
            "topk",
            [16.0f64, 32.0, 64.0, 128.0].iter().map(|&k| (k, 1.0 - 0.5 / k.sqrt(), format!("k={k}"))).collect(),
        )
        .series("relu", [(40.0, 0.80, "l1=5".to_string()), (90.0, 0.86, "l1=2".to_string())].to_vec())
        .log_x(true);
    report.section("Scatter", &frontier);
    let grid = ChartGrid::new("Small multiples", 2)
        .chart(&LineChart::new("layer 4", "step", "loss").series("sae", loss(1.0, 0.1)))
        .chart(&LineChart::new("layer 8", "step", "loss").series("sae", loss(1.5, 0.1)));
    report.section("Grid", &grid);
    report
}

fn quickstart(ws: &Workspace, out: &std::path::Path) -> Result<()> {
    let started = std::time::Instant::now();
    let files = saekit::data::write_corpus(&ws.root().join("embedded"))?;
    let mut report = Report::new("saekit quickstart");
    report.provenance("workspace", ws.root().display().to_string());
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let name = name.split('.').next().unwrap_or("corpus").to_string();
        let source = Source::open(file)?;
        let dataset = match ws.dataset(&name) {
            Ok(existing) if existing.status() == DatasetStatus::Ready => existing,
            _ => {
                let job = ws.import_dataset_job(&name, &source);
                job.subscribe(Arc::new(TerminalBar::new()));
                let dataset = job.wait()?;
                report.section(format!("Import of {name}"), &job);
                dataset
            }
        };
        ws.tag(&name, &["embedded", "public-domain"])?;
        report.provenance(
            format!("input {name}"),
            format!("{} ({} bytes)", file.display(), std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)),
        );
        report.section(format!("Schema of {name}"), &source.schema()?);
        report.section(format!("Dataset {name}"), &ws.dataset(dataset.name())?);
        report.section(format!("First chapters of {name}"), &dataset.page(0, 3)?);
    }
    // Tokenize the Austen novels with GPT-2 into 256-token packed sequences, as SAE training wants them.
    let tokenizer = Tokenizer::gpt2()?;
    let params = TokenizeParams::packed(256);
    report.provenance("tokenizer", format!("{} (sha256 {})", tokenizer.name(), tokenizer.hash()));
    report.provenance("tokenization parameters", serde_json::to_string(&params).unwrap_or_default());
    let tokenization = match ws.latest_tokenization("austen") {
        Ok(existing) if existing.row().tokenizer_hash == tokenizer.hash() => existing,
        _ => {
            let job = ws.tokenize_job("austen", &tokenizer, &params);
            job.subscribe(Arc::new(TerminalBar::new()));
            let tokenization = job.wait()?;
            report.section("Tokenization job", &job);
            tokenization
        }
    };
    report.section("Tokenization of austen", &tokenization);
    report.section("First packed sequences", &tokenization.page_with(&tokenizer, 0, 2)?);
    report.section("Catalog", &ws.datasets()?);
    report.provenance("elapsed", format!("{:.1} s", started.elapsed().as_secs_f64()));
    report.write_html(out)?;
    println!("{}", report.to_text());
    println!("report written to {}", out.display());
    Ok(())
}

fn tokenize_command(mut args: Vec<String>, open_workspace: impl Fn() -> Result<Workspace>) -> Result<()> {
    let tokenizer = match take_value(&mut args, "--tokenizer")?.as_deref() {
        None | Some("gpt2") => Tokenizer::gpt2()?,
        Some(path) => Tokenizer::from_file(path)?,
    };
    let number = |args: &mut Vec<String>, flag: &str| -> Result<Option<usize>> {
        take_value(args, flag)?
            .map(|v| v.parse().map_err(|_| Error::InvalidArgument(format!("{flag} needs a whole number, not {v:?}"))))
            .transpose()
    };
    let mut params = TokenizeParams::default();
    if let Some(n) = number(&mut args, "--pack")? {
        params = TokenizeParams::packed(n);
    }
    if let Some(n) = number(&mut args, "--max-length")? {
        params.max_length = n;
    }
    if let Some(n) = number(&mut args, "--stride")? {
        params.stride = n;
    }
    if let Some(n) = number(&mut args, "--min-length")? {
        params.min_length = n;
    }
    params.add_bos = take_flag(&mut args, "--add-bos");
    params.add_eos = take_flag(&mut args, "--add-eos");
    let threads = number(&mut args, "--threads")?.unwrap_or(0);
    let json = take_flag(&mut args, "--json");
    let started = std::time::Instant::now();
    match take_value(&mut args, "--out")? {
        Some(out) => {
            let source = source_from(&mut args)?;
            let out = PathBuf::from(out);
            let partial = out.with_extension("partial");
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
            let ctx = saekit::jobs::JobContext::detached("tokenize");
            let outcome = tokenize_source(&source, &tokenizer, &params, &partial, threads, &ctx)?;
            std::fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
            let seconds = started.elapsed().as_secs_f64();
            if json {
                let summary = serde_json::json!({
                    "documents": outcome.stats.documents,
                    "sequences": outcome.store.num_sequences,
                    "tokens": outcome.store.num_tokens,
                    "document_tokens": outcome.stats.document_tokens,
                    "seconds": seconds,
                    "tokens_per_s": outcome.stats.document_tokens as f64 / seconds,
                    "store": out,
                });
                println!("{summary}");
            } else {
                println!("{}", outcome.stats.bundle().plain());
                println!("token store written to {} in {seconds:.1} s", out.display());
            }
            Ok(())
        }
        None => {
            if args.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "tokenize needs a DATASET (or --out DIR and files)\n\n{USAGE}"
                )));
            }
            let name = args.remove(0);
            let ws = open_workspace()?;
            let job = ws.tokenize_job(&name, &tokenizer, &params);
            job.subscribe(Arc::new(TerminalBar::new()));
            let tokenization = job.wait()?;
            println!("{}", tokenization.bundle().plain());
            Ok(())
        }
    }
}

fn hub_command(mut args: Vec<String>, open_workspace: impl Fn() -> Result<Workspace>) -> Result<()> {
    let usage =
        || Error::InvalidArgument(format!("hub needs `info REPO`, `download REPO` or `tokenizer REPO`\n\n{USAGE}"));
    if args.len() < 2 {
        return Err(usage());
    }
    let action = args.remove(0);
    let revision = take_value(&mut args, "--revision")?;
    let hub = Hub::from_env()?;
    match action.as_str() {
        "info" | "download" => {
            let mut selection = Selection::new();
            selection.config = take_value(&mut args, "--config")?;
            selection.split = take_value(&mut args, "--split")?;
            if let Some(files) = take_value(&mut args, "--files")? {
                selection.files = files.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect();
            }
            selection.max_rows = take_value(&mut args, "--max-rows")?
                .map(|v| {
                    v.parse().map_err(|_| Error::InvalidArgument(format!("--max-rows needs a whole number, not {v:?}")))
                })
                .transpose()?;
            let name = take_value(&mut args, "--name")?;
            let text = take_value(&mut args, "--text")?;
            let template = take_value(&mut args, "--template")?;
            let plan_only = take_flag(&mut args, "--plan-only");
            if let Some(unknown) = args.iter().find(|a| a.starts_with("--")) {
                return Err(Error::InvalidArgument(format!("unknown option {unknown}\n\n{USAGE}")));
            }
            let [repo] = args.as_slice() else { return Err(usage()) };
            let mut handle = hub.dataset(repo);
            if let Some(revision) = &revision {
                handle = handle.revision(revision);
            }
            let info = handle.info()?;
            if action == "info" {
                println!("{}", info.bundle().plain());
                return Ok(());
            }
            let mut plan = info.plan(&selection)?;
            if let Some(text) = text {
                plan = plan.text_column(&text);
            }
            if let Some(template) = template {
                plan = plan.text_template(&template.replace("\\n", "\n"));
            }
            println!("{}", plan.bundle().plain());
            if plan_only {
                return Ok(());
            }
            plan.check_space()?;
            let ws = open_workspace()?;
            let job = ws.download_dataset_job(name.as_deref().unwrap_or(repo), &plan);
            job.subscribe(Arc::new(TerminalBar::new()));
            let dataset = job.wait()?;
            println!("{}", dataset.bundle().plain());
            Ok(())
        }
        "tokenizer" => {
            let [repo] = args.as_slice() else { return Err(usage()) };
            let tokenizer = Tokenizer::from_hub_with(&hub, repo)?;
            let sample = "Sparse autoencoders find features.";
            let ids = tokenizer.encode(sample)?;
            println!(
                "tokenizer {} · vocabulary {} · hash {}",
                tokenizer.name(),
                tokenizer.vocab_size(),
                tokenizer.hash()
            );
            println!("{sample:?} → {ids:?}");
            Ok(())
        }
        _ => Err(usage()),
    }
}
