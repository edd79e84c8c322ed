//! The WGSL kernels of `shaders/`, composed at build time: each kernel file is concatenated after
//! `shaders/common.wgsl` and `shaders/params.wgsl` (every kernel's parameter block, declared once;
//! the MLP kernels also after `shaders/mlp_common.wgsl`, and `mlp_fwd` and `mlp_bwd_data` after
//! `shaders/mlp_tile.wgsl`, their register-tile arithmetic) by `include_str!`,
//! so the binary carries them and nothing is read at run time. At pipeline creation two small
//! choices are prepended: the gradient-scatter variant (`shaders/atomic_native.wgsl` or
//! `shaders/atomic_cas.wgsl`) for the kernels that scatter, the hash-grid scatter
//! (`shaders/scatter_plain.wgsl` or, with subgroups, `shaders/scatter_subgroup.wgsl`), and the MLP
//! kernels' tile constants and activation storage (`Act`: f32, or f16 with `enable f16;`).

use flythrough_gpu::AtomicMode;

macro_rules! wgsl {
    ($f:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $f))
    };
}

macro_rules! kernel {
    // The kernel file after common.wgsl, params.wgsl and the shared files it names.
    ($f:literal $(, $shared:literal)*) => {
        concat!(
            wgsl!("common.wgsl"),
            "\n",
            wgsl!("params.wgsl"),
            "\n",
            $(wgsl!($shared), "\n",)*
            "// ---- ",
            $f,
            "\n",
            wgsl!($f)
        )
    };
}

/// What a kernel needs at composition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the composed text is final.
    Nothing,
    /// A gradient-scatter variant (`grad_add`, `GradWord`).
    Atomic,
    /// The MLP tile constants and the activation storage type (`Act`).
    MlpShape,
    /// A gradient-scatter variant and the hash-grid scatter (`scatter_feats`: with or without a
    /// subgroup pre-reduction).
    HashScatter,
}

/// How the MLPs' hidden activations kept for the backward (the `cache` buffer) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    /// 32-bit floats (every device).
    #[default]
    F32,
    /// 16-bit floats (devices with `SHADER_F16`): half the bytes of the largest per-step buffers;
    /// the arithmetic stays f32, only the stored value is rounded (relative error <= 2^-11).
    F16,
}

impl Act {
    /// `f32` or `f16`: the log's and `stage.json`'s spelling (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Act::F32 => "f32",
            Act::F16 => "f16",
        }
    }

    /// 32-bit words of a buffer of `len` activations.
    pub fn words(self, len: usize) -> usize {
        match self {
            Act::F32 => len,
            Act::F16 => len.div_ceil(2),
        }
    }
}

/// The optional device features a composition uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Extras {
    /// The MLP activation storage.
    pub act: Act,
    /// Subgroup operations in the hash-grid gradient scatter.
    pub subgroups: bool,
    /// Kernels first fill their workgroup memory with NaN (`POISON_WG`; tests): a read of a slot
    /// no invocation wrote then shows in the outputs. Pipelines are created without zeroing
    /// workgroup memory, so on a GPU such a read returns whatever the last workgroup left.
    pub poison_workgroup: bool,
}

/// A kernel of the GPU back end, by name: the only way host code asks for a pipeline, so a misspelt
/// kernel is a compile error. `KERNELS[id as usize]` is its source (a test checks the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelId {
    RaygenCamera,
    RaygenEquirect,
    SampleLevel,
    HashFwd,
    HashBwd,
    MlpFwd,
    MlpBwdData,
    MlpBwdWeights,
    ReducePartials,
    Weights,
    RayFeatures,
    Composite,
    NerfLoss,
    Interlevel,
    GloGrad,
    LossReduce,
    SqNorm,
    SqNormFinal,
    Adam,
    SampleBatch,
}

impl KernelId {
    /// The kernel's source: its entry point (= file name without `.wgsl`) and composed text.
    pub fn source(self) -> &'static KernelSource {
        &KERNELS[self as usize]
    }

    /// Its entry point.
    pub fn name(self) -> &'static str {
        self.source().name
    }
}

/// One kernel: its entry point (= file name without `.wgsl`) and its text after composition.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub id: KernelId,
    pub name: &'static str,
    pub text: &'static str,
    pub needs: Needs,
}

/// Every kernel of the GPU back end.
pub const KERNELS: &[KernelSource] = &[
    KernelSource {
        id: KernelId::RaygenCamera,
        name: "raygen_camera",
        text: kernel!("raygen_camera.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::RaygenEquirect,
        name: "raygen_equirect",
        text: kernel!("raygen_equirect.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::SampleLevel,
        name: "sample_level",
        text: kernel!("sample_level.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::HashFwd,
        name: "hash_fwd",
        text: kernel!("hash_fwd.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::HashBwd,
        name: "hash_bwd",
        text: kernel!("hash_bwd.wgsl"),
        needs: Needs::HashScatter,
    },
    KernelSource {
        id: KernelId::MlpFwd,
        name: "mlp_fwd",
        text: kernel!("mlp_fwd.wgsl", "mlp_common.wgsl", "mlp_tile.wgsl"),
        needs: Needs::MlpShape,
    },
    KernelSource {
        id: KernelId::MlpBwdData,
        name: "mlp_bwd_data",
        text: kernel!("mlp_bwd_data.wgsl", "mlp_common.wgsl", "mlp_tile.wgsl"),
        needs: Needs::MlpShape,
    },
    KernelSource {
        id: KernelId::MlpBwdWeights,
        name: "mlp_bwd_weights",
        text: kernel!("mlp_bwd_weights.wgsl", "mlp_common.wgsl"),
        needs: Needs::MlpShape,
    },
    KernelSource {
        id: KernelId::ReducePartials,
        name: "reduce_partials",
        text: kernel!("reduce_partials.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::Weights,
        name: "weights",
        text: kernel!("weights.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::RayFeatures,
        name: "ray_features",
        text: kernel!("ray_features.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::Composite,
        name: "composite",
        text: kernel!("composite.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::NerfLoss,
        name: "nerf_loss",
        text: kernel!("nerf_loss.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::Interlevel,
        name: "interlevel",
        text: kernel!("interlevel.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::GloGrad,
        name: "glo_grad",
        text: kernel!("glo_grad.wgsl"),
        needs: Needs::Atomic,
    },
    KernelSource {
        id: KernelId::LossReduce,
        name: "loss_reduce",
        text: kernel!("loss_reduce.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::SqNorm,
        name: "sq_norm",
        text: kernel!("sq_norm.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::SqNormFinal,
        name: "sq_norm_final",
        text: kernel!("sq_norm_final.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::Adam,
        name: "adam",
        text: kernel!("adam.wgsl"),
        needs: Needs::Nothing,
    },
    KernelSource {
        id: KernelId::SampleBatch,
        name: "sample_batch",
        text: kernel!("sample_batch.wgsl"),
        needs: Needs::Nothing,
    },
];

/// Every kernel's parameter block (`shaders/params.wgsl`), for the layout check of the Rust mirrors.
pub const PARAMS: &str = wgsl!("params.wgsl");

/// The scatter variants' texts.
pub const ATOMIC_NATIVE: &str = wgsl!("atomic_native.wgsl");
pub const ATOMIC_CAS: &str = wgsl!("atomic_cas.wgsl");

/// The hash-grid scatter variants' texts.
pub const SCATTER_PLAIN: &str = wgsl!("scatter_plain.wgsl");
pub const SCATTER_SUBGROUP: &str = wgsl!("scatter_subgroup.wgsl");

/// Tile constants of the MLP kernels: rows per workgroup, widest input, widest layer output (both
/// rounded up to multiples of 4, so every row of a tile in workgroup memory starts a 16-byte
/// vector), invocations per workgroup, rows per invocation (`rb`: each invocation of `mlp_fwd` and
/// `mlp_bwd_data` computes a register tile of `min(rb, tile)` rows x 4 columns; 4 by default, 8
/// with [`MlpShape::with_rows`]), and the weight rows staged in workgroup memory at a time
/// (`stage`, a multiple of 4; 0: the kernels read the weights from global memory). Workgroup
/// memory: `4 * tile * (max_in + 2 * max_w)` bytes, plus `4 * stage * max(max_in, max_w)` for the
/// staged weights ([`staged_floats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MlpShape {
    pub tile: u32,
    pub max_in: u32,
    pub max_w: u32,
    pub wg: u32,
    pub rb: u32,
    pub stage: u32,
}

/// Weight rows per staged chunk of the MLP kernels when weights go through workgroup memory
/// ([`MlpShape::stage`]): 16 rows of a 64-wide layer are 4 KB.
pub const STAGE_ROWS: u32 = 16;

/// Floats of the staged weights (the kernels' `wsh`): `stage` rows of the widest input or layer,
/// each rounded up to a multiple of 4 as the kernels round them (the forward stages rows of W, at
/// most `max_w` wide; the backward rows of W^T, at most `max(max_in, max_w)`).
pub fn staged_floats(stage: u32, max_in: u32, max_w: u32) -> u32 {
    stage.next_multiple_of(4) * max_in.next_multiple_of(4).max(max_w.next_multiple_of(4))
}

impl MlpShape {
    /// The largest power-of-two tile (at most 32 rows) whose workgroup memory, with `stage` weight
    /// rows staged ([`MlpShape::stage`]), fits `budget` bytes; without staging where even a
    /// one-row tile and the staged rows do not fit.
    pub fn fit(
        max_in: u32,
        max_w: u32,
        budget: u32,
        max_invocations: u32,
        stage: u32,
    ) -> Option<MlpShape> {
        let (max_in, max_w) = (max_in.next_multiple_of(4), max_w.next_multiple_of(4));
        let stage = stage.next_multiple_of(4);
        let per_row = 4 * (max_in + 2 * max_w);
        let staged = 4 * staged_floats(stage, max_in, max_w);
        let Some(budget_rows) = budget.checked_sub(staged).filter(|&b| b >= per_row) else {
            return if stage > 0 {
                MlpShape::fit(max_in, max_w, budget, max_invocations, 0)
            } else {
                None
            };
        };
        let mut tile = 32u32;
        while tile > 1 && tile * per_row > budget_rows {
            tile /= 2;
        }
        Some(MlpShape {
            tile,
            max_in,
            max_w,
            wg: 128.min(max_invocations),
            rb: 4,
            stage,
        })
    }

    /// The same shape with register tiles of `rb` rows (4 or 8; [`super::MLP_ROWS_ENV`]) and the
    /// invocations per workgroup scaled so that a full tile of a 64-wide layer is still one round
    /// (128 at 4 rows, 64 at 8): twice the multiply-adds per weight load at 8 rows, half the
    /// invocations in flight.
    pub fn with_rows(self, rb: u32) -> MlpShape {
        let rb = rb.clamp(1, 8);
        MlpShape {
            rb,
            wg: (self.wg * self.rb.max(1) / rb).max(32),
            ..self
        }
    }

    /// `4 * tile * (max_in + 2 * max_w)` plus the staged weights' bytes: the most workgroup
    /// memory an MLP kernel of this shape declares.
    pub fn workgroup_bytes(&self) -> u32 {
        let (i, w) = (
            self.max_in.next_multiple_of(4),
            self.max_w.next_multiple_of(4),
        );
        4 * self.tile * (i + 2 * w) + 4 * staged_floats(self.stage, i, w)
    }
}

/// The complete WGSL text of `k` for a device's scatter mode, the model's MLP shape and the
/// optional features in use (`enable` directives come first, as WGSL requires).
pub fn compose(k: &KernelSource, atomic: AtomicMode, shape: MlpShape, extras: Extras) -> String {
    let poison = format!(
        "const POISON_WG: bool = {};\nfn wg_nan() -> f32 {{ return bitcast<f32>(0x7fc00000u); }}\n",
        extras.poison_workgroup
    );
    let body = compose_body(k, atomic, shape, extras);
    // `enable` directives first, as WGSL requires.
    match body.strip_prefix("enable f16;\n") {
        Some(rest) => format!("enable f16;\n{poison}{rest}"),
        None => format!("{poison}{body}"),
    }
}

fn compose_body(k: &KernelSource, atomic: AtomicMode, shape: MlpShape, extras: Extras) -> String {
    let atomic_text = match atomic {
        AtomicMode::NativeF32 => ATOMIC_NATIVE,
        AtomicMode::CasU32 => ATOMIC_CAS,
    };
    match k.needs {
        Needs::Nothing => k.text.to_string(),
        Needs::Atomic => format!("{atomic_text}\n{}", k.text),
        Needs::HashScatter => {
            let scatter = if extras.subgroups {
                SCATTER_SUBGROUP
            } else {
                SCATTER_PLAIN
            };
            format!("{atomic_text}\n{scatter}\n{}", k.text)
        }
        Needs::MlpShape => format!(
            "{}const TILE: u32 = {}u;\nconst MAXIN: u32 = {}u;\nconst MAXW: u32 = {}u;\nconst MLP_WG: u32 = {}u;\nconst RB: u32 = {}u;\nconst STAGE: u32 = {}u;\nconst WSTAGE: u32 = {}u;\n{}",
            match extras.act {
                Act::F32 => "alias Act = f32;\nconst ACT_MAX: f32 = 3.4028235e38;\n",
                Act::F16 => "enable f16;\nalias Act = f16;\nconst ACT_MAX: f32 = 65504.0;\n",
            },
            shape.tile,
            // `fit` rounds these already; a hand-built shape is rounded here (the kernels' vec4
            // rows need it).
            shape.max_in.next_multiple_of(4),
            shape.max_w.next_multiple_of(4),
            shape.wg,
            shape.rb.clamp(1, 8).min(shape.tile),
            shape.stage.next_multiple_of(4),
            // vec4s of the staged weights (at least one: WGSL has no empty arrays).
            (staged_floats(shape.stage, shape.max_in, shape.max_w) / 4).max(1),
            k.text
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel parses and validates with naga in every combination it can be composed in:
    /// both scatter variants (native f32 atomics need the capability, the CAS loop must not), and
    /// MLP shapes from a one-row tile to the default 32-row tile. No adapter is involved.
    #[test]
    fn every_shader_validates_for_each_feature_combination() {
        let shapes = [
            MlpShape {
                tile: 32,
                max_in: 96,
                max_w: 64,
                wg: 128,
                rb: 4,
                stage: 0,
            },
            MlpShape {
                tile: 32,
                max_in: 84,
                max_w: 64,
                wg: 64,
                rb: 8,
                stage: STAGE_ROWS,
            },
            MlpShape {
                tile: 4,
                max_in: 83,
                max_w: 512,
                wg: 256,
                rb: 4,
                stage: 0,
            },
            MlpShape {
                tile: 1,
                max_in: 1,
                max_w: 1,
                wg: 64,
                rb: 8,
                stage: 4,
            },
        ];
        let mut checked = 0;
        let extras = [
            Extras::default(),
            Extras {
                act: Act::F16,
                subgroups: true,
                poison_workgroup: true,
            },
        ];
        for k in KERNELS {
            for atomic in [AtomicMode::NativeF32, AtomicMode::CasU32] {
                for shape in shapes {
                    for ex in extras {
                        let src = compose(k, atomic, shape, ex);
                        let uses_f16 = k.needs == Needs::MlpShape && ex.act == Act::F16;
                        let uses_subgroups = k.needs == Needs::HashScatter && ex.subgroups;
                        let caps = [true, false];
                        for float_atomics in caps {
                            for optional in [true, false] {
                                let r = flythrough_gpu::validate_wgsl_with(
                                    &src,
                                    flythrough_gpu::ShaderFeatures {
                                        float_atomics,
                                        f16: optional,
                                        subgroups: optional,
                                    },
                                );
                                let needs_cap =
                                    matches!(k.needs, Needs::Atomic | Needs::HashScatter)
                                        && atomic == AtomicMode::NativeF32;
                                if (needs_cap && !float_atomics)
                                    || (!optional && (uses_f16 || uses_subgroups))
                                {
                                    assert!(
                                        r.is_err(),
                                        "{}: validated without a capability it uses ({atomic:?}, {ex:?}, \
                                 float atomics {float_atomics}, f16/subgroups {optional})",
                                        k.name
                                    );
                                    continue;
                                }
                                let eps = r.unwrap_or_else(|e| {
                                    panic!("{} ({atomic:?}, {shape:?}, {ex:?}):\n{e}", k.name)
                                });
                                assert_eq!(
                                    eps,
                                    vec![k.name.to_string()],
                                    "{}: one entry point named as the file",
                                    k.name
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked >= KERNELS.len() * 12, "{checked}");
    }

    /// `KernelId` indexes `KERNELS`, and every kernel file has an id.
    #[test]
    fn kernel_ids_index_their_sources() {
        for (i, k) in KERNELS.iter().enumerate() {
            assert_eq!(k.id as usize, i, "{}", k.name);
            assert_eq!(k.id.name(), k.name);
        }
        let files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".wgsl"))
                .collect();
        for k in KERNELS {
            assert!(files.contains(&format!("{}.wgsl", k.name)), "{}", k.name);
        }
    }

    #[test]
    fn mlp_tile_fits_the_workgroup_memory() {
        let s = MlpShape::fit(83, 64, 32768, 1024, 0).unwrap();
        assert_eq!(s.tile, 32);
        assert_eq!((s.max_in, s.max_w), (84, 64));
        assert_eq!(s.workgroup_bytes(), 4 * 32 * (84 + 128));
        assert!(s.workgroup_bytes() <= 32768);
        let s = MlpShape::fit(83, 64, 16384, 256, 0).unwrap();
        assert_eq!(s.tile, 16);
        let s = MlpShape::fit(83, 512, 16384, 256, 0).unwrap();
        assert_eq!(s.tile, 2);
        assert!(MlpShape::fit(4096, 4096, 16384, 256, 0).is_none());
        // Staged weights take their rows first: 16 rows of 84 floats (5376 bytes) beside a 32-row
        // tile (27136) fit 32768 and 48 KB (NVIDIA), not 16384 (a 8-row tile there).
        for (budget, tile) in [(32768, 32), (49152, 32), (16384, 8)] {
            let s = MlpShape::fit(83, 64, budget, 1024, STAGE_ROWS).unwrap();
            assert_eq!((s.tile, s.stage), (tile, 16), "{budget}");
            assert_eq!(s.workgroup_bytes(), 4 * tile * (84 + 128) + 4 * 16 * 84);
            assert!(s.workgroup_bytes() <= budget);
        }
        // Where the staged rows (5376 bytes) leave no room for one row (848), the weights stay in
        // global memory, and the tile is fitted to the whole budget.
        let s = MlpShape::fit(83, 64, 6000, 1024, STAGE_ROWS).unwrap();
        assert_eq!((s.tile, s.stage), (4, 0));
        // Register tiles of 8 rows: half the invocations, the same workgroup memory.
        let s = MlpShape::fit(83, 64, 32768, 1024, 0).unwrap();
        assert_eq!((s.rb, s.wg), (4, 128));
        let s8 = s.with_rows(8);
        assert_eq!((s8.rb, s8.wg, s8.tile), (8, 64, 32));
        assert_eq!(s8.workgroup_bytes(), s.workgroup_bytes());
        assert_eq!(s8.with_rows(4), s);
        assert!(
            compose(
                &KERNELS[KernelId::MlpFwd as usize],
                AtomicMode::CasU32,
                s8,
                Extras::default()
            )
            .contains("const RB: u32 = 8u;")
        );
    }
}
