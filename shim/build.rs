//! Links the `berth-shim` executable as a fixed-address (non-PIE) binary.
//!
//! One shim runs per pod, so its resident memory is paid per pod. A PIE
//! needs a relative relocation for every pointer in its read-only data
//! (vtables, string tables): the loader writes all of them at start-up,
//! which turns the whole `.data.rel.ro` (~0.4 MiB) into private dirty
//! pages of every shim. At a fixed address those pointers are final in the
//! file, the pages stay clean, shared and faulted in only when used. The
//! libraries it loads and its stack, heap and mmap areas stay randomised.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bin=berth-shim=-Wl,--no-pie");
}
