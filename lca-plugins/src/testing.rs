//! Deliberately incompatible root modules, for the loader's failure tests.
//! Not a public API: `plugins/fixtures/*` use it to build libraries that a
//! real host must refuse.

#![allow(
    unsafe_code,
    missing_docs,
    unreachable_pub,
    non_local_definitions,
    non_camel_case_types
)]

use abi_stable::library::{CheckTypeLayout, LibHeader, RootModule, RootModuleResult};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RString;
use abi_stable::{StableAbi, declare_root_module_statics};

/// The root module of a plugin built against an older ABI version.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OldAbiModRef)))]
#[sabi(missing_field(panic))]
pub struct OldAbiMod {
    #[sabi(last_prefix_field)]
    pub info: extern "C" fn() -> RString,
}

impl RootModule for OldAbiModRef {
    declare_root_module_statics! {OldAbiModRef}
    const BASE_NAME: &'static str = "lca_plugin";
    const NAME: &'static str = "lca_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.0.9");
}

/// The root module of a plugin with the current ABI version but a different
/// layout (as if built from modified sources).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = OtherLayoutModRef)))]
#[sabi(missing_field(panic))]
pub struct OtherLayoutMod {
    #[sabi(last_prefix_field)]
    pub info: extern "C" fn() -> u32,
}

impl RootModule for OtherLayoutModRef {
    declare_root_module_statics! {OtherLayoutModRef}
    const BASE_NAME: &'static str = "lca_plugin";
    const NAME: &'static str = "lca_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(crate::abi::ABI_VERSION);
}

extern "C" fn old_info() -> RString {
    RString::from("old")
}

extern "C" fn other_info() -> u32 {
    7
}

fn old_module() -> OldAbiModRef {
    OldAbiMod { info: old_info }.leak_into_prefix()
}

fn other_module() -> OtherLayoutModRef {
    OtherLayoutMod { info: other_info }.leak_into_prefix()
}

pub extern "C" fn load_old_abi() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(old_module)
}

pub extern "C" fn load_other_layout() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(other_module)
}

/// # Safety
/// Only for `load_old_abi`.
pub const unsafe fn old_abi_header(constructor: extern "C" fn() -> RootModuleResult) -> LibHeader {
    // SAFETY: `load_old_abi` returns an `OldAbiModRef`.
    unsafe { LibHeader::from_constructor::<OldAbiModRef>(constructor, CheckTypeLayout::Yes) }
}

/// # Safety
/// Only for `load_other_layout`.
pub const unsafe fn other_layout_header(
    constructor: extern "C" fn() -> RootModuleResult,
) -> LibHeader {
    // SAFETY: `load_other_layout` returns an `OtherLayoutModRef`.
    unsafe { LibHeader::from_constructor::<OtherLayoutModRef>(constructor, CheckTypeLayout::Yes) }
}

/// Exports an incompatible root module: `old_abi` or `other_layout`.
#[macro_export]
#[doc(hidden)]
macro_rules! __export_incompatible_fixture {
    (old_abi) => {
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __LCA_FIXTURE_HEADER: $crate::__private::LibHeader =
            // SAFETY: the constructor matches the header type.
            unsafe { $crate::testing::old_abi_header($crate::testing::load_old_abi) };
    };
    (other_layout) => {
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __LCA_FIXTURE_HEADER: $crate::__private::LibHeader =
            // SAFETY: the constructor matches the header type.
            unsafe { $crate::testing::other_layout_header($crate::testing::load_other_layout) };
    };
}
