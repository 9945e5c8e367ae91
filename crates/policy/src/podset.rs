//! A fixed-size set of pod indices, one bit per pod.

/// A set of pods of one [`crate::PolicyIndex`], as a bitset over pod indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodSet {
    words: Vec<u64>,
}

impl PodSet {
    /// The empty set for `n` pods.
    pub(crate) fn empty(n: usize) -> Self {
        PodSet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// The set of all `n` pods.
    pub(crate) fn full(n: usize) -> Self {
        let mut s = PodSet::empty(n);
        for i in 0..n {
            s.insert(i);
        }
        s
    }

    /// Adds pod `i`.
    pub(crate) fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// True when pod `i` is in the set.
    #[inline]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// `self |= other`.
    pub(crate) fn union_with(&mut self, other: &PodSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    /// `self |= a & b`.
    pub(crate) fn union_with_and(&mut self, a: &PodSet, b: &PodSet) {
        for ((w, x), y) in self.words.iter_mut().zip(&a.words).zip(&b.words) {
            *w |= *x & *y;
        }
    }

    /// The pods in the set, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, w)| {
            let mut w = *w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_iter() {
        let mut s = PodSet::empty(130);
        assert_eq!(s.iter().count(), 0);
        for i in [0, 63, 64, 129] {
            s.insert(i);
        }
        s.insert(500); // out of range: ignored
        assert!(s.contains(63) && s.contains(64) && !s.contains(1) && !s.contains(500));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63, 64, 129]);
        let f = PodSet::full(130);
        assert_eq!(f.iter().count(), 130);
        let mut u = PodSet::empty(130);
        u.union_with_and(&f, &s);
        assert_eq!(u, s);
    }
}
