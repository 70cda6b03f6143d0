//! The `params!` macro: a component's parameters declared once, as a struct
//! whose fields carry their documentation, default and rule.

/// Declares a component's parameters once. From one declaration it makes
/// the struct, its [`Params`](crate::params::Params) implementation (the
/// parameter table of `lca example`, reading and checking a recipe table,
/// the applied values), so the documented default, the applied default and
/// the range check cannot drift apart.
///
/// Each field is `name: Type = default => rule,` (the comma ends every
/// field, the last one too), with its `///` documentation as the summary:
///
/// - without `= default` the parameter is required;
/// - `=> rule` is a [`Rule`](crate::params::rule::Rule), such as
///   `range(1..)` or `range(0.0..1.0).and(…)`, checked on the value and shown
///   in the "allowed" column; types with a fixed set of values (declared with
///   [`param_enum!`](crate::param_enum)) list them there by themselves;
/// - `#[shown = "…"]` replaces the documented default where the declared
///   one is `None` and means something (`"all"`, `"the step's seed"`);
/// - groups of parameters shared by many components are declared with this
///   macro too and included with `#[flatten] name: Group`, after the fields.
///
/// ```
/// use lca_core::params::Params;
/// use lca_core::params::rule::range;
///
/// lca_core::params! {
///     /// Parameters of a ranker.
///     pub struct TopK {
///         /// how many neurons to keep
///         k: usize = 10 => range(1..),
///         /// scale of the noise
///         noise: f64 = 0.5 => range(0.0..=1.0),
///         /// a file to read
///         path: std::path::PathBuf,
///     }
/// }
///
/// let docs = TopK::docs();
/// assert_eq!((docs[0].default.as_str(), docs[0].range.as_str()), ("10", "≥ 1"));
/// assert!(docs[2].is_required());
/// let table = "path = \"x.npy\"\nk = 3".parse().unwrap();
/// let p = TopK::parse("demo", &table).unwrap();
/// assert_eq!((p.k, p.noise), (3, 0.5));
/// let bad = "path = \"x.npy\"\nk = 0".parse().unwrap();
/// assert_eq!(
///     TopK::parse("demo", &bad).unwrap_err().to_string(),
///     "demo: parameter `k` = 0 is not allowed; expected a non-negative integer ≥ 1"
/// );
/// ```
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[shown = $shown:literal])?
                $field:ident : $ty:ty $(= $default:expr)? $(=> $rule:expr)?,
            )*
            $(
                #[flatten]
                $group:ident : $gty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        $vis struct $name {
            $( $(#[doc = $doc])* $vis $field: $ty, )*
            $( #[allow(missing_docs)] $vis $group: $gty, )*
        }

        impl $crate::params::Params for $name {
            fn docs() -> ::std::vec::Vec<$crate::params::ParamDoc> {
                #[allow(unused_mut)]
                let mut docs = ::std::vec![$(
                    $crate::params::__declared_doc::<$ty>(
                        ::std::stringify!($field),
                        &[$($doc),*],
                        $crate::params!(@default $ty; $($default)?),
                        $crate::params!(@shown $($shown)?),
                        &$crate::params!(@rule $ty; $($rule)?),
                    )
                ),*];
                $( docs.extend(<$gty as $crate::params::Params>::docs()); )*
                docs
            }

            fn from_table(
                component: &str,
                table: &$crate::toml::Table,
            ) -> $crate::Result<Self> {
                Ok($name {
                    $(
                        $field: $crate::params::__declared_field::<$ty>(
                            component,
                            table,
                            ::std::stringify!($field),
                            $crate::params!(@default $ty; $($default)?),
                            &$crate::params!(@rule $ty; $($rule)?),
                        )?,
                    )*
                    $( $group: <$gty as $crate::params::Params>::from_table(component, table)?, )*
                })
            }

            fn to_table(&self) -> $crate::toml::Table {
                #[allow(unused_mut)]
                let mut table = $crate::toml::Table::new();
                $(
                    if let Some(value) = $crate::params::ParamValue::to_toml(&self.$field) {
                        table.insert(::std::stringify!($field).into(), value);
                    }
                )*
                $( table.extend($crate::params::Params::to_table(&self.$group)); )*
                table
            }
        }
    };
    (@default $ty:ty; ) => { ::std::option::Option::<$ty>::None };
    (@default $ty:ty; $default:expr) => { ::std::option::Option::<$ty>::Some($default) };
    (@shown) => { ::std::option::Option::<&str>::None };
    (@shown $shown:literal) => { ::std::option::Option::<&str>::Some($shown) };
    (@rule $ty:ty; ) => { $crate::params::rule::Rule::<$ty>::any() };
    (@rule $ty:ty; $rule:expr) => {{
        #[allow(unused_imports)]
        use $crate::params::rule::*;
        let rule: $crate::params::rule::Rule<$ty> = $rule;
        rule
    }};
}
