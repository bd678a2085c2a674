#!/usr/bin/env python3
"""Writes a Rust program of about 20,000 lines to stdout, for the rustc
section of the bench (bench/rustc_bench.py): the work rustc does on it
(parsing, type checking, borrow checking, monomorphizing iterator chains
and generics, LLVM) is what hugeload's 2 MiB pages are measured on.

    gen_rust.py [FUNCS]     (default 750 functions, about 50 lines each)

Deterministic: the same FUNCS gives the same file, byte for byte. Each
function does real work of one of six kinds (integer mixing with a match,
sorting and folding a Vec, string building, a struct with methods and an
iterator chain, a HashMap histogram, a generic fold over a trait), with
constants drawn from a fixed linear congruential sequence; `main` calls
every function and prints one checksum."""

import sys


class Lcg:
    """A fixed 64-bit linear congruential sequence (Knuth's MMIX constants)."""

    def __init__(self, seed):
        self.x = seed

    def next(self, bound):
        self.x = (self.x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.x >> 33) % bound


def mix(i, r):
    a, b, c = r.next(1 << 31) | 1, r.next(61) + 1, r.next(1000) + 7
    arms = "\n".join(
        f"            {k} => acc = acc.wrapping_mul({r.next(1 << 20) | 1}).rotate_left({r.next(63) + 1}),"
        for k in range(6)
    )
    return f"""
/// Integer mixing with a match on the low bits ({i}).
#[inline(never)]
pub fn f{i}(seed: u64) -> u64 {{
    let mut acc = seed ^ {a};
    let mut k = 0u64;
    while k < {c} {{
        match (acc ^ k) % 7 {{
{arms}
            _ => acc ^= acc >> {b},
        }}
        acc = acc.wrapping_add(k.wrapping_mul({a}));
        k += 1;
    }}
    if acc % 3 == 0 {{
        acc = acc.wrapping_sub({r.next(1 << 30)});
    }} else if acc % 3 == 1 {{
        acc = acc.rotate_right({b % 63 + 1});
    }} else {{
        acc ^= {r.next(1 << 30)};
    }}
    acc
}}
"""


def vec_sort(i, r):
    n, m = r.next(200) + 50, r.next(1 << 16) | 1
    return f"""
/// Build, sort, deduplicate and fold a Vec ({i}).
#[inline(never)]
pub fn f{i}(seed: u64) -> u64 {{
    let mut v: Vec<u64> = Vec::with_capacity({n});
    let mut x = seed | 1;
    for _ in 0..{n} {{
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x % {m});
    }}
    v.sort_unstable();
    v.dedup();
    let evens: u64 = v.iter().filter(|&&e| e % 2 == 0).sum();
    let odds = v.iter().filter(|&&e| e % 2 == 1).fold(0u64, |a, &e| a.wrapping_mul(31).wrapping_add(e));
    let top = v.iter().rev().take({r.next(20) + 3}).copied().max().unwrap_or(0);
    let windows: u64 = v.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    evens.wrapping_add(odds).wrapping_add(top).wrapping_add(windows).wrapping_add(v.len() as u64)
}}
"""


def strings(i, r):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    w = [words[r.next(len(words))] for _ in range(4)]
    reps = r.next(40) + 10
    return f"""
/// Build a string with format! and count its bytes ({i}).
#[inline(never)]
pub fn f{i}(seed: u64) -> u64 {{
    let mut s = String::new();
    for k in 0..{reps} {{
        let word = match (seed + k) % 4 {{
            0 => "{w[0]}",
            1 => "{w[1]}",
            2 => "{w[2]}",
            _ => "{w[3]}",
        }};
        s.push_str(&format!("{{}}-{{}};", word, k * {r.next(97) + 1}));
    }}
    let upper = s.to_uppercase();
    let parts: Vec<&str> = upper.split(';').filter(|p| !p.is_empty()).collect();
    let longest = parts.iter().map(|p| p.len()).max().unwrap_or(0) as u64;
    let bytes: u64 = s.bytes().map(u64::from).sum();
    bytes.wrapping_mul({r.next(1 << 16) | 1}) ^ longest ^ parts.len() as u64
}}
"""


def structs(i, r):
    fields = r.next(4) + 3
    decl = "\n".join(f"    x{k}: u64," for k in range(fields))
    init = ", ".join(f"x{k}: seed.wrapping_mul({r.next(1 << 20) | 1}) ^ {k}" for k in range(fields))
    total = " + ".join(f"(self.x{k} % {r.next(1000) + 1})" for k in range(fields))
    step = "\n".join(f"        self.x{k} = self.x{k}.rotate_left({r.next(60) + 1}) ^ self.x{(k + 1) % fields};" for k in range(fields))
    return f"""
#[derive(Clone, Debug, PartialEq)]
struct S{i} {{
{decl}
}}

impl S{i} {{
    fn new(seed: u64) -> Self {{
        S{i} {{ {init} }}
    }}
    fn step(&mut self) {{
{step}
    }}
    fn total(&self) -> u64 {{
        {total}
    }}
}}

/// A struct with methods, cloned and compared, and an iterator chain ({i}).
#[inline(never)]
pub fn f{i}(seed: u64) -> u64 {{
    let mut s = S{i}::new(seed);
    let states: Vec<S{i}> = (0..{r.next(50) + 10})
        .map(|_| {{
            s.step();
            s.clone()
        }})
        .collect();
    let same = states.windows(2).filter(|w| w[0] == w[1]).count() as u64;
    states.iter().map(S{i}::total).enumerate().map(|(k, t)| t.wrapping_mul(k as u64 + 1)).sum::<u64>() ^ same
}}
"""


def hashmap(i, r):
    n, b = r.next(300) + 100, r.next(50) + 5
    return f"""
/// A HashMap histogram, then its keys sorted ({i}).
#[inline(never)]
pub fn f{i}(seed: u64) -> u64 {{
    let mut h: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut x = seed.wrapping_add({r.next(1 << 30)});
    for _ in 0..{n} {{
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *h.entry((x >> 33) % {b}).or_insert(0) += 1;
    }}
    let mut keys: Vec<(&u64, &u64)> = h.iter().collect();
    keys.sort();
    keys.iter().fold(0u64, |a, (k, v)| a.wrapping_mul(1_000_003).wrapping_add(**k * 7 + **v))
}}
"""


def generic(i, r):
    return f"""
trait Fold{i} {{
    fn fold_in(&self, acc: u64) -> u64;
}}

impl Fold{i} for u64 {{
    fn fold_in(&self, acc: u64) -> u64 {{
        acc.wrapping_mul({r.next(1 << 20) | 1}) ^ self
    }}
}}

impl Fold{i} for (u64, u32) {{
    fn fold_in(&self, acc: u64) -> u64 {{
        acc.rotate_left(self.1 % 63 + 1).wrapping_add(self.0)
    }}
}}

fn fold_all{i}<T: Fold{i}>(items: &[T], start: u64) -> u64 {{
    items.iter().fold(start, |acc, it| it.fold_in(acc))
}}

/// A generic fold over a trait, monomorphized twice ({i}).
#[inline(never)]
pub fn f{i}(seed: u64) -> u64 {{
    let a: Vec<u64> = (0..{r.next(100) + 20}).map(|k| seed ^ (k * {r.next(1000) + 1})).collect();
    let b: Vec<(u64, u32)> = a.iter().map(|&v| (v, (v % 97) as u32)).collect();
    fold_all{i}(&a, seed) ^ fold_all{i}(&b, !seed)
}}
"""


KINDS = [mix, vec_sort, strings, structs, hashmap, generic]


def main():
    funcs = int(sys.argv[1]) if len(sys.argv) > 1 else 750
    r = Lcg(0x2545F4914F6CDD1D)
    out = [
        "//! Generated by bench/gen_rust.py: do not edit.",
        "#![allow(clippy::all)]",
        "",
    ]
    for i in range(funcs):
        out.append(KINDS[i % len(KINDS)](i, r))
    calls = "\n".join(f"    acc = acc.rotate_left(7) ^ f{i}(acc.wrapping_add({i}));" for i in range(funcs))
    out.append(f"""
fn main() {{
    let mut acc: u64 = std::env::args().count() as u64;
{calls}
    println!("checksum {{acc:016x}}");
}}
""")
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
