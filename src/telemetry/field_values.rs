//! Named string values kept in one buffer, so that a log record, and the
//! Loki entry made from it, allocates twice for all its field values rather
//! than once per value.

use std::fmt;

/// Named string values, in insertion order, stored back to back in one
/// string.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FieldValues {
    text: String,
    /// Each field's name and the end of its value in `text`. A value starts
    /// where the previous one ends.
    ends: Vec<(&'static str, usize)>,
}

impl FieldValues {
    /// Creates an empty set with room for `fields` values of `text_bytes`
    /// bytes in total.
    pub fn with_capacity(fields: usize, text_bytes: usize) -> Self {
        Self {
            text: String::with_capacity(text_bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// Appends a value. A name may appear more than once.
    pub fn push(&mut self, name: &'static str, value: &str) {
        self.text.push_str(value);
        self.ends.push((name, self.text.len()));
    }

    /// Returns the (name, value) pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'static str, &str)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(name, end)| {
            let value = &self.text[start..end];
            start = end;
            (name, value)
        })
    }

    /// Returns the first value named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of all values.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Cuts every value longer than `max_bytes` at a character boundary to
    /// at most `max_bytes`. Returns whether any value was cut.
    pub fn truncate_values(&mut self, max_bytes: usize) -> bool {
        if self.iter().all(|(_, value)| value.len() <= max_bytes) {
            return false;
        }
        let mut cut = Self::with_capacity(self.len(), self.text.len());
        for (name, value) in self.iter() {
            let mut end = value.len().min(max_bytes);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            cut.push(name, &value[..end]);
        }
        *self = cut;
        true
    }

    /// Copies the pairs into owned strings.
    pub fn to_vec(&self) -> Vec<(&'static str, String)> {
        self.iter()
            .map(|(name, value)| (name, value.to_owned()))
            .collect()
    }
}

impl fmt::Debug for FieldValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: AsRef<str>> FromIterator<(&'static str, V)> for FieldValues {
    fn from_iter<I: IntoIterator<Item = (&'static str, V)>>(pairs: I) -> Self {
        let mut values = Self::default();
        for (name, value) in pairs {
            values.push(name, value.as_ref());
        }
        values
    }
}

impl<V: AsRef<str>> From<Vec<(&'static str, V)>> for FieldValues {
    fn from(pairs: Vec<(&'static str, V)>) -> Self {
        pairs.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_order_and_boundaries() {
        let values: FieldValues = vec![("a", "1"), ("b", ""), ("c", "333")].into();
        let pairs: Vec<_> = values.iter().collect();
        assert_eq!(pairs, [("a", "1"), ("b", ""), ("c", "333")]);
        assert_eq!(values.get("c"), Some("333"));
        assert_eq!(values.get("z"), None);
        assert_eq!(values.text_len(), 4);
    }

    #[test]
    fn truncation_cuts_only_long_values_at_char_boundaries() {
        let mut values: FieldValues = vec![("short", "ok"), ("long", "日本語")].into();
        assert!(values.truncate_values(4));
        assert_eq!(
            values.to_vec(),
            [("short", "ok".into()), ("long", "日".into())]
        );
        assert!(!values.truncate_values(4));
    }
}
