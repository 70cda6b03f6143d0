//! What a parameter's value must satisfy, stated once: the same [`Rule`]
//! checks the value and writes the "allowed" column of the parameter table.
//!
//! ```
//! use lca_core::params::rule::{Rule, range};
//! let delta: Rule<f64> = range(0.0..100.0);
//! assert_eq!(delta.text(), "0 ≤ x < 100");
//! assert!(delta.passes(&99.5) && !delta.passes(&100.0));
//! let sizes: Rule<Vec<usize>> = range(1..);
//! assert_eq!(sizes.text(), "each ≥ 1");
//! ```

use std::fmt::{self, Display};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::ParamValue;

type Test<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// A condition on a parameter's value, with its description in words.
pub struct Rule<T> {
    text: String,
    test: Option<Test<T>>,
}

impl<T> Clone for Rule<T> {
    fn clone(&self) -> Self {
        Rule {
            text: self.text.clone(),
            test: self.test.clone(),
        }
    }
}

impl<T> fmt::Debug for Rule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rule({:?})", self.text)
    }
}

impl<T> Rule<T> {
    /// Any value of the type is allowed.
    pub fn any() -> Self {
        Rule {
            text: String::new(),
            test: None,
        }
    }

    /// A condition on the whole value, described by `text`
    /// (`an increasing list`).
    pub fn new(text: impl Into<String>, test: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        Rule {
            text: text.into(),
            test: Some(Arc::new(test)),
        }
    }

    /// Any value is allowed, and `text` says what makes sense (`a file, or
    /// a directory of Brown files`): for conditions checked later, when the
    /// value is used.
    pub fn note(text: impl Into<String>) -> Self {
        Rule {
            text: text.into(),
            test: None,
        }
    }

    /// The description; empty for [`Rule::any`].
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `value` satisfies the rule.
    pub fn passes(&self, value: &T) -> bool {
        self.test.as_ref().is_none_or(|t| t(value))
    }

    /// Both rules.
    pub fn and(self, other: Rule<T>) -> Self
    where
        T: 'static,
    {
        let text = match (self.text.is_empty(), other.text.is_empty()) {
            (true, _) => other.text.clone(),
            (_, true) => self.text.clone(),
            _ => format!("{}, {}", self.text, other.text),
        };
        match (self.test, other.test) {
            (Some(a), Some(b)) => Rule {
                text,
                test: Some(Arc::new(move |v| a(v) && b(v))),
            },
            (a, b) => Rule {
                text,
                test: a.or(b),
            },
        }
    }
}

impl<T: ParamValue + 'static> Rule<T> {
    /// A condition on every scalar of the value (the number of an
    /// `Option<usize>`, each number of a `Vec<f64>`), described by `text`.
    pub fn each(
        text: impl Into<String>,
        test: impl Fn(&T::Scalar) -> bool + Send + Sync + 'static,
    ) -> Self {
        let text = text.into();
        let is_list = matches!(
            T::TYPE,
            super::ParamType::IntegerList
                | super::ParamType::FloatList
                | super::ParamType::StringList
        );
        Rule {
            text: if is_list {
                format!("each {text}")
            } else {
                text
            },
            test: Some(Arc::new(move |v: &T| v.scalars().into_iter().all(&test))),
        }
    }
}

/// The value, or each of its numbers, lies in `bounds`: `1..` is `≥ 1`,
/// `0.0..1.0` is `0 ≤ x < 1`, `..=10` is `≤ 10`.
pub fn range<T, R>(bounds: R) -> Rule<T>
where
    T: ParamValue + 'static,
    T::Scalar: PartialOrd + Display + Clone + Send + Sync + 'static,
    R: RangeBounds<T::Scalar>,
{
    let low = bounds.start_bound().cloned();
    let high = bounds.end_bound().cloned();
    let text = match (&low, &high) {
        (Bound::Included(a), Bound::Unbounded) => format!("≥ {a}"),
        (Bound::Excluded(a), Bound::Unbounded) => format!("> {a}"),
        (Bound::Unbounded, Bound::Included(b)) => format!("≤ {b}"),
        (Bound::Unbounded, Bound::Excluded(b)) => format!("< {b}"),
        (Bound::Unbounded, Bound::Unbounded) => String::new(),
        (a, b) => {
            let left = match a {
                Bound::Included(a) => format!("{a} ≤ "),
                Bound::Excluded(a) => format!("{a} < "),
                Bound::Unbounded => String::new(),
            };
            let right = match b {
                Bound::Included(b) => format!(" ≤ {b}"),
                Bound::Excluded(b) => format!(" < {b}"),
                Bound::Unbounded => String::new(),
            };
            format!("{left}x{right}")
        }
    };
    Rule::each(text, move |x: &T::Scalar| {
        let above = match &low {
            Bound::Included(a) => x >= a,
            Bound::Excluded(a) => x > a,
            Bound::Unbounded => true,
        };
        let below = match &high {
            Bound::Included(b) => x <= b,
            Bound::Excluded(b) => x < b,
            Bound::Unbounded => true,
        };
        above && below
    })
}

/// The value, or each of its numbers, is greater than `low` (`> 0`).
pub fn above<T>(low: T::Scalar) -> Rule<T>
where
    T: ParamValue + 'static,
    T::Scalar: PartialOrd + Display + Clone + Send + Sync + 'static,
{
    range((Bound::Excluded(low), Bound::Unbounded))
}

/// A share in percent: each value in (0, 100].
pub fn percent<T>() -> Rule<T>
where
    T: ParamValue<Scalar = f64> + 'static,
{
    range((Bound::Excluded(0.0), Bound::Included(100.0)))
}

/// A list with at least one element.
pub fn non_empty<T: Send + Sync + 'static>() -> Rule<Vec<T>> {
    Rule::new("not empty", |v: &Vec<T>| !v.is_empty())
}

/// A list in strictly increasing order.
pub fn increasing<T: PartialOrd + Send + Sync + 'static>() -> Rule<Vec<T>> {
    Rule::new("increasing", |v: &Vec<T>| v.windows(2).all(|w| w[0] < w[1]))
}

/// A list without repeated elements.
pub fn distinct<T: PartialEq + Send + Sync + 'static>() -> Rule<Vec<T>> {
    Rule::new("no repeats", |v: &Vec<T>| {
        v.iter()
            .enumerate()
            .all(|(i, a)| v[..i].iter().all(|b| a != b))
    })
}

/// Text from a fixed set: `"a", "b" or "c"`.
pub fn one_of<T: ParamValue<Scalar = String> + 'static>(names: &'static [&'static str]) -> Rule<T> {
    Rule::each(super::one_of(names.iter().copied()), move |s: &String| {
        names.contains(&s.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_describe_themselves_and_check_every_scalar() {
        let r: Rule<f64> = range(0.0..=1.0);
        assert_eq!(r.text(), "0 ≤ x ≤ 1");
        assert!(r.passes(&1.0) && !r.passes(&1.5));
        let r: Rule<Option<usize>> = range(1..);
        assert_eq!(r.text(), "≥ 1");
        assert!(r.passes(&None) && r.passes(&Some(1)) && !r.passes(&Some(0)));
        let r: Rule<Vec<f64>> = range(0.0..).and(increasing());
        assert_eq!(r.text(), "each ≥ 0, increasing");
        assert!(r.passes(&vec![0.0, 2.0]) && !r.passes(&vec![2.0, 1.0]) && !r.passes(&vec![-1.0]));
        let r: Rule<f64> = above(0.0);
        assert_eq!(r.text(), "> 0");
        assert!(!r.passes(&0.0) && r.passes(&1e-9));
    }

    #[test]
    fn named_sets_and_lists() {
        let r: Rule<String> = one_of(&["first", "random"]);
        assert_eq!(r.text(), "\"first\" or \"random\"");
        assert!(r.passes(&"random".to_string()) && !r.passes(&"last".to_string()));
        let r: Rule<Vec<u32>> = non_empty::<u32>().and(distinct());
        assert_eq!(r.text(), "not empty, no repeats");
        assert!(!r.passes(&vec![]) && !r.passes(&vec![1, 1]) && r.passes(&vec![1, 2]));
        assert!(Rule::<i64>::any().passes(&-5));
    }
}
