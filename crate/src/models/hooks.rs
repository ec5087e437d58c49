//! Hook points: the places in a forward pass whose activations can be read or replaced, named as
//! TransformerLens names them (the names SAELens configs use), and the request/record pair a forward pass
//! threads through them: [`Forward`] says what to read and replace, [`HookRun`] does it as the pass goes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::Tensor;

use crate::error::{Error, Result};

/// One point of the forward pass, by its TransformerLens name.
///
/// In the causal families (pre-LayerNorm blocks) a block is `resid_mid = resid_pre + attn(ln1(resid_pre))`,
/// `resid_post = resid_mid + mlp(ln2(resid_mid))`. BERT's blocks are post-LayerNorm:
/// `resid_mid = LN(resid_pre + attn(resid_pre))` and `resid_post = LN(resid_mid + mlp(resid_mid))`, so there
/// `hook_resid_mid`/`hook_resid_post` are the outputs of the two LayerNorms (what the next sublayer reads),
/// `hook_resid_pre` of block 0 is the embeddings after their LayerNorm, and there is no
/// `ln_final.hook_normalized` (the last `hook_resid_post` is already normalised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// `hook_embed`: the token embeddings.
    Embed,
    /// `hook_pos_embed`: the learned position embeddings (GPT-2, BERT).
    PosEmbed,
    /// `blocks.{L}.hook_resid_pre`: the residual stream entering block L.
    ResidPre(usize),
    /// `blocks.{L}.hook_attn_out`: the attention sublayer's output, before it is added to the stream.
    AttnOut(usize),
    /// `blocks.{L}.hook_resid_mid`: the stream between attention and MLP.
    ResidMid(usize),
    /// `blocks.{L}.mlp.hook_post`: the MLP's hidden activations after the nonlinearity (`d_mlp` wide).
    MlpPost(usize),
    /// `blocks.{L}.hook_mlp_out`: the MLP sublayer's output, before it is added to the stream.
    MlpOut(usize),
    /// `blocks.{L}.hook_resid_post`: the stream leaving block L.
    ResidPost(usize),
    /// `ln_final.hook_normalized`: the final LayerNorm/RMSNorm's output, which the unembedding reads.
    FinalNormalized,
}

impl HookPoint {
    /// Where the point comes in the pass: points of earlier blocks sort first, `ln_final` last.
    pub fn depth(self) -> (usize, u8) {
        match self {
            HookPoint::Embed => (0, 0),
            HookPoint::PosEmbed => (0, 1),
            HookPoint::ResidPre(l) => (l + 1, 0),
            HookPoint::AttnOut(l) => (l + 1, 1),
            HookPoint::ResidMid(l) => (l + 1, 2),
            HookPoint::MlpPost(l) => (l + 1, 3),
            HookPoint::MlpOut(l) => (l + 1, 4),
            HookPoint::ResidPost(l) => (l + 1, 5),
            HookPoint::FinalNormalized => (usize::MAX, 0),
        }
    }

    /// The block the point belongs to, if any.
    pub fn layer(self) -> Option<usize> {
        match self {
            HookPoint::ResidPre(l)
            | HookPoint::AttnOut(l)
            | HookPoint::ResidMid(l)
            | HookPoint::MlpPost(l)
            | HookPoint::MlpOut(l)
            | HookPoint::ResidPost(l) => Some(l),
            _ => None,
        }
    }

    /// Every hook point of a model with `layers` blocks, in pass order.
    pub(crate) fn all(layers: usize, pos_embed: bool, final_norm: bool) -> Vec<HookPoint> {
        let mut points = vec![HookPoint::Embed];
        if pos_embed {
            points.push(HookPoint::PosEmbed);
        }
        for l in 0..layers {
            points.extend([
                HookPoint::ResidPre(l),
                HookPoint::AttnOut(l),
                HookPoint::ResidMid(l),
                HookPoint::MlpPost(l),
                HookPoint::MlpOut(l),
                HookPoint::ResidPost(l),
            ]);
        }
        if final_norm {
            points.push(HookPoint::FinalNormalized);
        }
        points
    }
}

impl PartialOrd for HookPoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HookPoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.depth().cmp(&other.depth())
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::Embed => write!(f, "hook_embed"),
            HookPoint::PosEmbed => write!(f, "hook_pos_embed"),
            HookPoint::ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            HookPoint::AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            HookPoint::ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            HookPoint::MlpPost(l) => write!(f, "blocks.{l}.mlp.hook_post"),
            HookPoint::MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            HookPoint::ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
            HookPoint::FinalNormalized => write!(f, "ln_final.hook_normalized"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = Error;

    /// Parses a TransformerLens name; whether a given model has the point is [`super::Model::hook`]'s call.
    fn from_str(name: &str) -> Result<HookPoint> {
        let bad = || {
            Error::InvalidArgument(format!(
                "`{name}` is not a hook name; hooks are named as TransformerLens names them: hook_embed, hook_pos_embed, \
             blocks.L.hook_resid_pre, blocks.L.hook_attn_out, blocks.L.hook_resid_mid, blocks.L.mlp.hook_post, \
             blocks.L.hook_mlp_out, blocks.L.hook_resid_post, ln_final.hook_normalized"
            ))
        };
        match name {
            "hook_embed" => return Ok(HookPoint::Embed),
            "hook_pos_embed" => return Ok(HookPoint::PosEmbed),
            "ln_final.hook_normalized" => return Ok(HookPoint::FinalNormalized),
            _ => {}
        }
        let rest = name.strip_prefix("blocks.").ok_or_else(bad)?;
        let (layer, point) = rest.split_once('.').ok_or_else(bad)?;
        let layer: usize = layer.parse().map_err(|_| bad())?;
        Ok(match point {
            "hook_resid_pre" => HookPoint::ResidPre(layer),
            "hook_attn_out" => HookPoint::AttnOut(layer),
            "hook_resid_mid" => HookPoint::ResidMid(layer),
            "mlp.hook_post" => HookPoint::MlpPost(layer),
            "hook_mlp_out" => HookPoint::MlpOut(layer),
            "hook_resid_post" => HookPoint::ResidPost(layer),
            _ => return Err(bad()),
        })
    }
}

/// A function that edits the activations at a hook point; the pass goes on with what it returns (same
/// shape). SAE evaluation splices reconstructions in this way.
pub type HookFn = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// What one forward pass should read, replace and return: hooks by name (checked against the model when it
/// runs), replacements, and the logits, the next-token loss or the sentence embedding.
///
/// ```no_run
/// # use saekit::models::{Forward, Model};
/// # fn main() -> saekit::Result<()> {
/// let model = Model::load("path/to/model")?;
/// let batch = model.encode(&["The cat sat on the mat."])?;
/// let out = model.run(&batch, &Forward::new().hook("blocks.3.hook_resid_post").loss())?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Forward {
    pub(crate) hooks: Vec<String>,
    pub(crate) replace: Vec<(String, HookFn)>,
    pub(crate) logits: bool,
    pub(crate) loss: bool,
    pub(crate) embedding: bool,
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replaced: Vec<&str> = self.replace.iter().map(|(h, _)| h.as_str()).collect();
        f.debug_struct("Forward")
            .field("hooks", &self.hooks)
            .field("replace", &replaced)
            .field("logits", &self.logits)
            .field("loss", &self.loss)
            .field("embedding", &self.embedding)
            .finish()
    }
}

impl Forward {
    pub fn new() -> Forward {
        Forward::default()
    }

    /// Records the activations at `hook` (a TransformerLens name such as `blocks.3.hook_resid_post`).
    pub fn hook(mut self, hook: impl fmt::Display) -> Forward {
        self.hooks.push(hook.to_string());
        self
    }

    /// Records the activations at each of `hooks`, all from the same pass.
    pub fn hooks<S: fmt::Display>(mut self, hooks: impl IntoIterator<Item = S>) -> Forward {
        self.hooks.extend(hooks.into_iter().map(|h| h.to_string()));
        self
    }

    /// Replaces the activations at `hook` by what `f` makes of them; later points see the result, and so
    /// does a recording of `hook` itself.
    pub fn replace(
        mut self,
        hook: impl fmt::Display,
        f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Forward {
        self.replace.push((hook.to_string(), Arc::new(f)));
        self
    }

    /// Also returns the logits (causal families).
    pub fn logits(mut self) -> Forward {
        self.logits = true;
        self
    }

    /// Also returns the next-token cross-entropy (causal families).
    pub fn loss(mut self) -> Forward {
        self.loss = true;
        self
    }

    /// Also returns the pooled sentence embedding (BERT).
    pub fn embedding(mut self) -> Forward {
        self.embedding = true;
        self
    }
}

/// A forward pass's hook bookkeeping: each family calls [`HookRun::at`] at every point it passes and
/// asks [`HookRun::wants`] before computing what only later points need, so the pass stops after the
/// deepest point anything asked for.
pub struct HookRun {
    capture: BTreeSet<HookPoint>,
    replace: HashMap<HookPoint, HookFn>,
    /// The deepest point whose value is needed (by a recording, or by the end of the pass).
    deepest: Option<HookPoint>,
    to_the_end: bool,
    recorded: BTreeMap<HookPoint, Tensor>,
}

impl HookRun {
    pub(crate) fn new(capture: BTreeSet<HookPoint>, replace: HashMap<HookPoint, HookFn>, to_the_end: bool) -> Self {
        let deepest = capture.iter().max().copied();
        HookRun { capture, replace, deepest, to_the_end, recorded: BTreeMap::new() }
    }

    /// Passes the activations at `point` through: replaced if asked, recorded if asked.
    pub fn at(&mut self, point: HookPoint, x: Tensor) -> Result<Tensor> {
        let x = match self.replace.get(&point) {
            Some(f) => {
                let y = f(&x)?;
                if y.dims() != x.dims() || y.dtype() != x.dtype() {
                    return Err(Error::InvalidArgument(format!(
                        "the replacement at {point} returned {:?} {:?}, expected {:?} {:?} (what it was given)",
                        y.dtype(),
                        y.dims(),
                        x.dtype(),
                        x.dims()
                    )));
                }
                y
            }
            None => x,
        };
        if self.capture.contains(&point) {
            self.recorded.insert(point, x.clone());
        }
        Ok(x)
    }

    /// Whether anything at `point` or after it is needed; a family skips the work of a point nobody needs.
    pub fn wants(&self, point: HookPoint) -> bool {
        self.to_the_end || self.deepest.is_some_and(|d| d >= point)
    }

    /// Whether the pass must run to its end (logits, loss or embedding asked for).
    pub fn to_the_end(&self) -> bool {
        self.to_the_end
    }

    pub(crate) fn into_recorded(self) -> BTreeMap<HookPoint, Tensor> {
        self.recorded
    }

    /// The blocks of a pre-norm causal model (GPT-2, Llama), `resid_mid = x + attn(x)`,
    /// `resid_post = resid_mid + mlp_out(mlp_hidden(resid_mid))` (each sublayer applies its own norm), then
    /// the final norm, with every hook point passed on the way and the pass stopped once nothing further
    /// is wanted (then `None`). `x` is the stream entering block 0.
    pub fn pre_norm_blocks(
        &mut self,
        mut x: Tensor,
        layers: usize,
        attention: impl Fn(usize, &Tensor) -> Result<Tensor>,
        mlp_hidden: impl Fn(usize, &Tensor) -> Result<Tensor>,
        mlp_out: impl Fn(usize, &Tensor) -> Result<Tensor>,
        final_norm: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Option<Tensor>> {
        for l in 0..layers {
            if !self.wants(HookPoint::ResidPre(l)) {
                return Ok(None);
            }
            x = self.at(HookPoint::ResidPre(l), x)?;
            if !self.wants(HookPoint::AttnOut(l)) {
                return Ok(None);
            }
            let attn = self.at(HookPoint::AttnOut(l), attention(l, &x)?)?;
            x = self.at(HookPoint::ResidMid(l), (x + attn)?)?;
            if !self.wants(HookPoint::MlpPost(l)) {
                return Ok(None);
            }
            let hidden = self.at(HookPoint::MlpPost(l), mlp_hidden(l, &x)?)?;
            let mlp = self.at(HookPoint::MlpOut(l), mlp_out(l, &hidden)?)?;
            x = self.at(HookPoint::ResidPost(l), (x + mlp)?)?;
        }
        if !self.wants(HookPoint::FinalNormalized) {
            return Ok(None);
        }
        Ok(Some(self.at(HookPoint::FinalNormalized, final_norm(&x)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_pass_order() {
        let all = HookPoint::all(2, true, true);
        for p in &all {
            assert_eq!(p.to_string().parse::<HookPoint>().unwrap(), *p);
        }
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.sort();
        assert_eq!(shuffled, all);
        assert!(HookPoint::ResidPost(0) < HookPoint::ResidPre(1));
        assert!(HookPoint::ResidPost(11) < HookPoint::FinalNormalized);
    }

    #[test]
    fn bad_names_are_refused_with_the_naming_scheme() {
        for bad in ["blocks.x.hook_resid_pre", "blocks.0.hook_resid", "resid_pre", "blocks.0"] {
            let e = bad.parse::<HookPoint>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("blocks.L.hook_resid_post"), "{e}");
        }
    }

    #[test]
    fn a_run_stops_after_its_deepest_hook() {
        let run = HookRun::new([HookPoint::AttnOut(1)].into(), HashMap::new(), false);
        assert!(run.wants(HookPoint::ResidPre(1)));
        assert!(run.wants(HookPoint::AttnOut(1)));
        assert!(!run.wants(HookPoint::ResidMid(1)));
        assert!(!run.wants(HookPoint::ResidPre(2)));
        let run = HookRun::new(BTreeSet::new(), HashMap::new(), true);
        assert!(run.wants(HookPoint::FinalNormalized));
    }
}
