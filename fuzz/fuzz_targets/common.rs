// Shared by the targets (included with `include!`): chunk splits derived
// from the input itself, so any corpus file (tests/corpus) is a valid seed
// and every mutation also tries new split points.

/// FNV-1a of the input: the seed of its split sizes.
#[allow(dead_code)]
fn seed(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// `data` cut into chunks of 1..=max bytes (xorshift from `seed`).
#[allow(dead_code)]
fn chunks(data: &[u8], seed: u64, max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut s = seed | 1;
    let mut rest = data;
    while !rest.is_empty() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let n = (s as usize % max.max(1)) + 1;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}
