//! Writes a tiny random model folder (config.json, model.safetensors,
//! tokenizer.json, vocab.txt), as the committed test fixtures were made:
//!
//! ```text
//! cargo run -p lca-plugin-transformer --example tiny-model -- DIR bert|roberta|distilbert [SEED]
//! ```

use lca_plugin_transformer::tiny::{self, Family};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(family)) = (args.first(), args.get(1)) else {
        return Err("usage: tiny-model DIR bert|roberta|distilbert [SEED]".into());
    };
    let family = match family.as_str() {
        "bert" => Family::Bert,
        "roberta" => Family::Roberta,
        "distilbert" => Family::DistilBert,
        other => {
            return Err(
                format!("unknown family {other:?}; use bert, roberta or distilbert").into(),
            );
        }
    };
    let seed = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(7);
    tiny::write(std::path::Path::new(dir), family, seed)?;
    eprintln!("wrote a tiny {family:?} model (seed {seed}) to {dir}");
    Ok(())
}
