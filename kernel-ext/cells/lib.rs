//! `saekit_cells`: what saekit-kernel adds to every cell (the kernel writes this file, as a crate of its own,
//! into its home and makes it a dependency of the cells; see `kernel-ext/src/cells.rs`).
//!
//! It is a crate of its own, not part of saekit, because rustc suggests importing any trait of a loaded
//! crate that would provide a missing method, and evcxr reports that suggestion as the cell's error instead
//! of falling back to `{:?}`. Only a cell that names this crate (the kernel's import) loads it: evcxr
//! without saekit-kernel, and cells after `:clear`, never see these traits.

/// A cell's value of a common standard type (numbers, strings, `Vec`, `Option`, maps, tuples, ...) shows its
/// `Debug` text, exactly as evcxr's own fallback prints it (`{:?}` as `text/plain`), but in the cell's first
/// compile.
///
/// evcxr ends a cell whose last line is an expression with `(expr).evcxr_display();` and, when that does
/// not compile, compiles the cell a second time printing `{:?}`: every `x + 1` cost two builds. With this
/// trait in scope (saekit-kernel imports it as `SaekitDebugDisplay` while `:fmt` is `{:?}` and `:types` is
/// off), those types have an `evcxr_display`. Its receiver is `&mut self`, which method lookup tries after
/// `&self`, and it is implemented for standard types only, never for references: a value with a `Render` display (saekit's), also
/// behind `&`, `&mut`, `Box`, `Rc` or `Arc`, still shows richly. What it does not cover (an immutable
/// variable alone, which cannot be borrowed mutably, or a type of the notebook's own) takes evcxr's second
/// build, with the same output as before.
pub trait DebugDisplay {
    fn evcxr_display(&mut self);
}

fn print_debug(value: &dyn std::fmt::Debug) {
    print!("EVCXR_BEGIN_CONTENT text/plain\n{value:?}\nEVCXR_END_CONTENT\n");
}

macro_rules! debug_display {
    ($($t:ty),* $(,)?) => {
        $(impl DebugDisplay for $t {
            fn evcxr_display(&mut self) {
                print_debug(self);
            }
        }
        impl NoDebugDisplay for $t {
            fn evcxr_display(&mut self, _: DebugDisplayOff) {}
        })*
    };
}
macro_rules! debug_display_generic {
    ($(<$($p:ident),+> $t:ty),* $(,)?) => {
        $(impl<$($p: std::fmt::Debug),+> DebugDisplay for $t {
            fn evcxr_display(&mut self) {
                print_debug(self);
            }
        }
        impl<$($p: std::fmt::Debug),+> NoDebugDisplay for $t {
            fn evcxr_display(&mut self, _: DebugDisplayOff) {}
        })*
    };
}
debug_display!(bool, char, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64, (), String);
debug_display!(&str, std::path::PathBuf, std::time::Duration);
debug_display_generic!(
    <T> Vec<T>,
    <T> Option<T>,
    <T> std::collections::VecDeque<T>,
    <T> std::collections::BTreeSet<T>,
    <T> std::collections::HashSet<T>,
    <K, V> std::collections::BTreeMap<K, V>,
    <K, V> std::collections::HashMap<K, V>,
    <T, E> std::result::Result<T, E>,
    <A, B> (A, B),
    <A, B, C> (A, B, C),
    <A, B, C, D> (A, B, C, D),
);

impl<T: std::fmt::Debug, const N: usize> DebugDisplay for [T; N] {
    fn evcxr_display(&mut self) {
        print_debug(self);
    }
}

impl<T: std::fmt::Debug, const N: usize> NoDebugDisplay for [T; N] {
    fn evcxr_display(&mut self, _: DebugDisplayOff) {}
}

/// What saekit-kernel imports as `SaekitDebugDisplay` in place of [`DebugDisplay`] while `:fmt` or `:types`
/// ask for something else, so that evcxr's own fallback, which honours them, prints the value. Its
/// `evcxr_display` takes an argument no cell has, so `(expr).evcxr_display()` does not compile and evcxr
/// falls back. (Importing nothing in its place would not do: rustc would then suggest importing
/// `DebugDisplay` in a help whose place evcxr does not recognise, and report that help as the error.)
pub trait NoDebugDisplay {
    fn evcxr_display(&mut self, off: DebugDisplayOff);
}

/// The argument of [`NoDebugDisplay::evcxr_display`]: there is no way to make one.
pub struct DebugDisplayOff(());
