//! The orderings Prometheus 2.42 leaves to Go's library, reproduced step for step so that equal
//! values come out in the same order: `container/heap` (the heaps of `topk`/`bottomk`) and
//! `sort.Sort` of Go 1.19 (pattern-defeating quicksort, not stable), with which Prometheus orders
//! the results of `topk`, `bottomk`, `sort` and `sort_desc`.
//!
//! Both work on a slice through a `less(a, b)` on elements, as Go's work through `Less(i, j)`.

/// Sifts element `j` up (Go's `heap.up`).
fn heap_up<T>(h: &mut [T], mut j: usize, less: &impl Fn(&T, &T) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

/// Sifts element `i0` down within `h[..n]` (Go's `heap.down`); whether it moved.
fn heap_down<T>(h: &mut [T], i0: usize, n: usize, less: &impl Fn(&T, &T) -> bool) -> bool {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(&h[j1 + 1], &h[j1]) {
            j = j1 + 1;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

/// Go's `heap.Push`.
pub(crate) fn heap_push<T>(h: &mut Vec<T>, x: T, less: &impl Fn(&T, &T) -> bool) {
    h.push(x);
    let last = h.len() - 1;
    heap_up(h, last, less);
}

/// Go's `heap.Pop`: removes and returns the least element.
pub(crate) fn heap_pop<T>(h: &mut Vec<T>, less: &impl Fn(&T, &T) -> bool) -> Option<T> {
    let n = h.len().checked_sub(1)?;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop()
}

/// Go 1.19's `sort.Sort`: sorts `v` by `less`, equal elements in the order Go leaves them.
pub(crate) fn sort<T>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let limit = bits_len(n);
    pdqsort(v, 0, n, limit, less);
}

/// Go's `bits.Len`: the number of bits needed to represent `x`.
fn bits_len(x: usize) -> usize {
    (usize::BITS - x.leading_zeros()) as usize
}

fn insertion_sort<T>(v: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sift_down<T>(v: &mut [T], lo: usize, hi: usize, first: usize, less: &impl Fn(&T, &T) -> bool) {
    let mut root = lo;
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            return;
        }
        if child + 1 < hi && less(&v[first + child], &v[first + child + 1]) {
            child += 1;
        }
        if !less(&v[first + root], &v[first + child]) {
            return;
        }
        v.swap(first + root, first + child);
        root = child;
    }
}

fn heap_sort<T>(v: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    let (first, hi) = (a, b - a);
    for i in (0..=(hi - 1) / 2).rev() {
        sift_down(v, i, hi, first, less);
    }
    for i in (0..hi).rev() {
        v.swap(first, first + i);
        sift_down(v, 0, i, first, less);
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Hint {
    Unknown,
    Increasing,
    Decreasing,
}

fn pdqsort<T>(v: &mut [T], mut a: usize, mut b: usize, mut limit: usize, less: &impl Fn(&T, &T) -> bool) {
    const MAX_INSERTION: usize = 12;
    let (mut was_balanced, mut was_partitioned) = (true, true);
    loop {
        let length = b - a;
        if length <= MAX_INSERTION {
            insertion_sort(v, a, b, less);
            return;
        }
        if limit == 0 {
            heap_sort(v, a, b, less);
            return;
        }
        if !was_balanced {
            break_patterns(v, a, b);
            limit -= 1;
        }
        let (mut pivot, mut hint) = choose_pivot(v, a, b, less);
        if hint == Hint::Decreasing {
            v[a..b].reverse();
            pivot = (b - 1) - (pivot - a);
            hint = Hint::Increasing;
        }
        if was_balanced && was_partitioned && hint == Hint::Increasing && partial_insertion_sort(v, a, b, less) {
            return;
        }
        if a > 0 && !less(&v[a - 1], &v[pivot]) {
            a = partition_equal(v, a, b, pivot, less);
            continue;
        }
        let (mid, already) = partition(v, a, b, pivot, less);
        was_partitioned = already;
        let (left, right) = (mid - a, b - mid);
        let balance_threshold = length / 8;
        if left < right {
            was_balanced = left >= balance_threshold;
            pdqsort(v, a, mid, limit, less);
            a = mid + 1;
        } else {
            was_balanced = right >= balance_threshold;
            pdqsort(v, mid + 1, b, limit, less);
            b = mid;
        }
    }
}

/// One partition around `v[pivot]`: smaller elements before the returned index, the others
/// after; also whether nothing had to move.
fn partition<T>(v: &mut [T], a: usize, b: usize, pivot: usize, less: &impl Fn(&T, &T) -> bool) -> (usize, bool) {
    v.swap(a, pivot);
    // `i` and `j` bound the elements still to partition (inclusive); `j` may step below `a + 1`,
    // hence signed indexes.
    let (mut i, mut j) = (a as isize + 1, b as isize - 1);
    while i <= j && less(&v[i as usize], &v[a]) {
        i += 1;
    }
    while i <= j && !less(&v[j as usize], &v[a]) {
        j -= 1;
    }
    if i > j {
        v.swap(j as usize, a);
        return (j as usize, true);
    }
    v.swap(i as usize, j as usize);
    i += 1;
    j -= 1;
    loop {
        while i <= j && less(&v[i as usize], &v[a]) {
            i += 1;
        }
        while i <= j && !less(&v[j as usize], &v[a]) {
            j -= 1;
        }
        if i > j {
            break;
        }
        v.swap(i as usize, j as usize);
        i += 1;
        j -= 1;
    }
    v.swap(j as usize, a);
    (j as usize, false)
}

/// Partitions `v[a..b]` (no element smaller than `v[pivot]`) into elements equal to the pivot,
/// then greater ones; returns where the greater ones start.
fn partition_equal<T>(v: &mut [T], a: usize, b: usize, pivot: usize, less: &impl Fn(&T, &T) -> bool) -> usize {
    v.swap(a, pivot);
    let (mut i, mut j) = (a as isize + 1, b as isize - 1);
    loop {
        while i <= j && !less(&v[a], &v[i as usize]) {
            i += 1;
        }
        while i <= j && less(&v[a], &v[j as usize]) {
            j -= 1;
        }
        if i > j {
            break;
        }
        v.swap(i as usize, j as usize);
        i += 1;
        j -= 1;
    }
    i as usize
}

/// Sorts `v[a..b]` if a few adjacent swaps do it; whether it is sorted.
fn partial_insertion_sort<T>(v: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) -> bool {
    const MAX_STEPS: usize = 5;
    const SHORTEST_SHIFTING: usize = 50;
    let mut i = a + 1;
    for _ in 0..MAX_STEPS {
        while i < b && !less(&v[i], &v[i - 1]) {
            i += 1;
        }
        if i == b {
            return true;
        }
        if b - a < SHORTEST_SHIFTING {
            return false;
        }
        v.swap(i, i - 1);
        // Go shifts down to index 1 of the whole slice here, not to `a + 1`.
        if i - a >= 2 {
            let mut j = i - 1;
            while j >= 1 {
                if !less(&v[j], &v[j - 1]) {
                    break;
                }
                v.swap(j, j - 1);
                j -= 1;
            }
        }
        if b - i >= 2 {
            for j in i + 1..b {
                if !less(&v[j], &v[j - 1]) {
                    break;
                }
                v.swap(j, j - 1);
            }
        }
    }
    false
}

/// Swaps three elements around the middle with pseudo-random others (seeded by the length).
fn break_patterns<T>(v: &mut [T], a: usize, b: usize) {
    let length = b - a;
    if length < 8 {
        return;
    }
    let mut random = length as u64;
    let modulus = 1usize << bits_len(length);
    for idx in a + (length / 4) * 2 - 1..=a + (length / 4) * 2 + 1 {
        random ^= random << 13;
        random ^= random >> 17;
        random ^= random << 5;
        let mut other = (random as usize) & (modulus - 1);
        if other >= length {
            other -= length;
        }
        v.swap(idx, a + other);
    }
}

fn choose_pivot<T>(v: &[T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) -> (usize, Hint) {
    const SHORTEST_NINTHER: usize = 50;
    const MAX_SWAPS: usize = 4 * 3;
    let l = b - a;
    let mut swaps = 0usize;
    let (mut i, mut j, mut k) = (a + l / 4, a + l / 4 * 2, a + l / 4 * 3);
    if l >= 8 {
        if l >= SHORTEST_NINTHER {
            i = median(v, i - 1, i, i + 1, &mut swaps, less);
            j = median(v, j - 1, j, j + 1, &mut swaps, less);
            k = median(v, k - 1, k, k + 1, &mut swaps, less);
        }
        j = median(v, i, j, k, &mut swaps, less);
    }
    match swaps {
        0 => (j, Hint::Increasing),
        MAX_SWAPS => (j, Hint::Decreasing),
        _ => (j, Hint::Unknown),
    }
}

fn order2<T>(v: &[T], a: usize, b: usize, swaps: &mut usize, less: &impl Fn(&T, &T) -> bool) -> (usize, usize) {
    if less(&v[b], &v[a]) {
        *swaps += 1;
        return (b, a);
    }
    (a, b)
}

fn median<T>(v: &[T], a: usize, b: usize, c: usize, swaps: &mut usize, less: &impl Fn(&T, &T) -> bool) -> usize {
    let (a, b) = order2(v, a, b, swaps, less);
    let (b, _) = order2(v, b, c, swaps, less);
    let (_, b) = order2(v, a, b, swaps, less);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Elements are (key, original index); sorting by key must give a sorted result, and, being a
    /// fixed algorithm, the same permutation of equal keys on every run.
    #[test]
    fn sorts_like_a_sort() {
        for n in [0usize, 1, 2, 5, 12, 13, 49, 50, 51, 200, 1000] {
            for pattern in 0..5 {
                let mut v: Vec<(u32, usize)> = (0..n)
                    .map(|i| {
                        let key = match pattern {
                            0 => i as u32,
                            1 => (n - i) as u32,
                            2 => (i * 7919 % 13) as u32,
                            3 => 1,
                            _ => (i as u32).wrapping_mul(2_654_435_761) >> 20,
                        };
                        (key, i)
                    })
                    .collect();
                let mut w = v.clone();
                sort(&mut v, &|x, y| x.0 < y.0);
                assert!(v.windows(2).all(|p| p[0].0 <= p[1].0), "n={n} pattern={pattern}");
                let mut idx: Vec<usize> = v.iter().map(|e| e.1).collect();
                idx.sort_unstable();
                assert_eq!(idx, (0..n).collect::<Vec<_>>());
                sort(&mut w, &|x, y| x.0 < y.0);
                assert_eq!(v, w);
            }
        }
    }

    #[test]
    fn heap_pops_in_order() {
        let less = |a: &i32, b: &i32| a < b;
        let mut h = Vec::new();
        for x in [5, 3, 9, 1, 7, 3] {
            heap_push(&mut h, x, &less);
        }
        let mut out = Vec::new();
        while let Some(x) = heap_pop(&mut h, &less) {
            out.push(x);
        }
        assert_eq!(out, vec![1, 3, 3, 5, 7, 9]);
    }
}
