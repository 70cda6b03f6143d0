//! Rust types that a parameter can have, and how each reads from and writes
//! to TOML.
//!
//! A type's [`ParamValue`] says which TOML type it takes (for the parameter
//! table and the recipe checker), how a value is read (with a message that
//! says what was expected), how it is written back (for documented and
//! applied defaults), and which scalars a bound such as `≥ 1` applies to.

use std::path::PathBuf;

use super::ParamType;

/// A type a component parameter can have.
pub trait ParamValue: Sized {
    /// What a bound compares: the number inside `Option<usize>` or each
    /// number of a `Vec<f64>`.
    type Scalar;

    /// The TOML type of the parameter.
    const TYPE: ParamType;

    /// Reads the value from TOML.
    ///
    /// # Errors
    /// What was expected, in words (`a non-negative integer`).
    fn from_toml(value: &toml::Value) -> Result<Self, String>;

    /// The value as TOML, or `None` for an absent optional value.
    fn to_toml(&self) -> Option<toml::Value>;

    /// The scalars a bound applies to.
    fn scalars(&self) -> Vec<&Self::Scalar>;

    /// The allowed values in words, for types with a fixed set of them.
    fn allowed() -> Option<String> {
        None
    }

    /// The type in words, with its article, for messages (`a finite number`).
    fn noun() -> String {
        Self::TYPE.with_article()
    }
}

fn found(value: &toml::Value) -> String {
    format!("{} `{}`", value.type_str(), super::short_toml(value))
}

impl ParamValue for f64 {
    type Scalar = f64;
    const TYPE: ParamType = ParamType::Float;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        let number = match value {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            other => return Err(format!("a number, found {}", found(other))),
        };
        if number.is_finite() {
            Ok(number)
        } else {
            Err(format!("a finite number, found {number}"))
        }
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Float(*self))
    }

    fn scalars(&self) -> Vec<&f64> {
        vec![self]
    }

    fn noun() -> String {
        "a finite number".into()
    }
}

/// Integers: TOML holds `i64`; narrower or unsigned types check the range.
macro_rules! integer_value {
    ($($ty:ty => $noun:literal $(; $allowed:literal)?),* $(,)?) => {$(
        impl ParamValue for $ty {
            type Scalar = $ty;
            const TYPE: ParamType = ParamType::Integer;

            fn from_toml(value: &toml::Value) -> Result<Self, String> {
                match value {
                    toml::Value::Integer(i) => <$ty>::try_from(*i)
                        .map_err(|_| format!("{}, found {i}", $noun)),
                    other => Err(format!("{}, found {}", $noun, found(other))),
                }
            }

            fn to_toml(&self) -> Option<toml::Value> {
                i64::try_from(*self).ok().map(toml::Value::Integer)
            }

            fn scalars(&self) -> Vec<&$ty> {
                vec![self]
            }

            fn noun() -> String {
                $noun.into()
            }

            fn allowed() -> Option<String> {
                None$(.or(Some($allowed.into())))?
            }
        }
    )*};
}

integer_value! {
    i64 => "an integer",
    u64 => "a non-negative integer" ; "≥ 0",
    usize => "a non-negative integer" ; "≥ 0",
    u32 => "a non-negative integer below 2^32" ; "0 ≤ x < 2^32",
}

impl ParamValue for bool {
    type Scalar = bool;
    const TYPE: ParamType = ParamType::Bool;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        value
            .as_bool()
            .ok_or_else(|| format!("true or false, found {}", found(value)))
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Boolean(*self))
    }

    fn scalars(&self) -> Vec<&bool> {
        vec![self]
    }

    fn allowed() -> Option<String> {
        Some("true or false".into())
    }
}

impl ParamValue for String {
    type Scalar = String;
    const TYPE: ParamType = ParamType::String;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("a string, found {}", found(value)))
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(self.clone()))
    }

    fn scalars(&self) -> Vec<&String> {
        vec![self]
    }
}

impl ParamValue for PathBuf {
    type Scalar = PathBuf;
    const TYPE: ParamType = ParamType::Path;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        value
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| format!("a path, found {}", found(value)))
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(self.display().to_string()))
    }

    fn scalars(&self) -> Vec<&PathBuf> {
        vec![self]
    }
}

impl<T: ParamValue> ParamValue for Option<T> {
    type Scalar = T::Scalar;
    const TYPE: ParamType = T::TYPE;

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        T::from_toml(value).map(Some)
    }

    fn to_toml(&self) -> Option<toml::Value> {
        self.as_ref().and_then(T::to_toml)
    }

    fn scalars(&self) -> Vec<&T::Scalar> {
        self.as_ref().map(T::scalars).unwrap_or_default()
    }

    fn allowed() -> Option<String> {
        T::allowed()
    }

    fn noun() -> String {
        T::noun()
    }
}

impl<T: ParamValue> ParamValue for Vec<T> {
    type Scalar = T::Scalar;
    const TYPE: ParamType = match T::TYPE {
        ParamType::Integer => ParamType::IntegerList,
        ParamType::Float => ParamType::FloatList,
        _ => ParamType::StringList,
    };

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        let list = value
            .as_array()
            .ok_or_else(|| format!("a list, found {}", found(value)))?;
        list.iter()
            .enumerate()
            .map(|(i, v)| T::from_toml(v).map_err(|e| format!("{e} (item {})", i + 1)))
            .collect()
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::Array(
            self.iter().filter_map(T::to_toml).collect(),
        ))
    }

    fn scalars(&self) -> Vec<&T::Scalar> {
        self.iter().flat_map(T::scalars).collect()
    }

    fn allowed() -> Option<String> {
        T::allowed().map(|a| format!("each {a}"))
    }

    fn noun() -> String {
        format!("a list of {}", T::TYPE)
    }
}

/// Declares an enum whose values are written as fixed strings in recipes,
/// with its [`ParamValue`], `Display` and `as_str`:
///
/// ```
/// lca_core::param_enum! {
///     /// Which sentences are kept.
///     pub enum Sample {
///         /// The first ones.
///         First = "first",
///         /// A seeded random sample.
///         Random = "random",
///     }
/// }
/// assert_eq!(Sample::Random.as_str(), "random");
/// ```
#[macro_export]
macro_rules! param_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[doc = $doc:literal])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[doc = $doc])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            $vis const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as a recipe writes it.
            $vis fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::params::ParamValue for $name {
            type Scalar = $name;
            const TYPE: $crate::params::ParamType = $crate::params::ParamType::String;

            fn from_toml(value: &$crate::toml::Value) -> ::std::result::Result<Self, ::std::string::String> {
                let text = value.as_str();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| Some(v.as_str()) == text)
                    .ok_or_else(|| {
                        format!(
                            "{}, found {}",
                            $crate::params::one_of($name::ALL.iter().map(|v| v.as_str())),
                            $crate::params::short_toml(value)
                        )
                    })
            }

            fn to_toml(&self) -> ::std::option::Option<$crate::toml::Value> {
                Some($crate::toml::Value::String(self.as_str().into()))
            }

            fn scalars(&self) -> ::std::vec::Vec<&$name> {
                vec![self]
            }

            fn allowed() -> ::std::option::Option<::std::string::String> {
                Some($crate::params::one_of($name::ALL.iter().map(|v| v.as_str())))
            }
        }
    };
}

/// `"a", "b" or "c"`: the allowed strings of a parameter, quoted.
pub fn one_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.into_iter().map(|n| format!("{n:?}")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> toml::Value {
        text.parse::<toml::Table>().unwrap()["x"].clone()
    }

    #[test]
    fn integers_check_their_range_and_say_what_was_expected() {
        assert_eq!(usize::from_toml(&v("x = 3")), Ok(3));
        assert_eq!(
            usize::from_toml(&v("x = -1")),
            Err("a non-negative integer, found -1".into())
        );
        assert_eq!(
            i64::from_toml(&v("x = \"ten\"")),
            Err("an integer, found string `\"ten\"`".into())
        );
    }

    #[test]
    fn floats_accept_integers_and_reject_non_finite_values() {
        assert_eq!(f64::from_toml(&v("x = 2")), Ok(2.0));
        assert!(f64::from_toml(&v("x = nan")).is_err());
        assert!(f64::from_toml(&v("x = inf")).is_err());
    }

    #[test]
    fn lists_name_the_bad_item() {
        assert_eq!(Vec::<usize>::from_toml(&v("x = [1, 2]")), Ok(vec![1, 2]));
        assert_eq!(
            Vec::<usize>::from_toml(&v("x = [1, -2]")),
            Err("a non-negative integer, found -2 (item 2)".into())
        );
        assert_eq!(Vec::<f64>::TYPE, ParamType::FloatList);
    }

    crate::param_enum! {
        /// A test enum.
        enum Linkage {
            /// Mean distance.
            Average = "average",
            /// Largest distance.
            Complete = "complete",
        }
    }

    #[test]
    fn enums_read_their_names_and_list_them_when_wrong() {
        assert_eq!(
            Linkage::from_toml(&v("x = \"complete\"")),
            Ok(Linkage::Complete)
        );
        assert_eq!(
            Linkage::from_toml(&v("x = \"single\"")),
            Err("\"average\" or \"complete\", found \"single\"".into())
        );
        assert_eq!(Linkage::Average.to_string(), "average");
    }
}
