//! Expansion of a Slurm hostlist (`SLURM_STEP_NODELIST`), so a barrier error
//! can name the nodes that did not arrive: node id `i` of a step is the
//! `i`-th host of its node list.

/// Expands `n[1-3,07],login` into `n1 n2 n3 n07 login`. Ranges keep the
/// zero padding of their lower bound, as Slurm writes them. Text that is
/// not a valid hostlist is returned as one name, unchanged: it only labels
/// an error message.
pub fn expand(list: &str) -> Vec<String> {
    split_top(list)
        .into_iter()
        .filter(|s| !s.is_empty())
        .flat_map(|item| expand_one(item).unwrap_or_else(|| vec![item.to_string()]))
        .collect()
}

/// Splits at the commas that are outside brackets.
fn split_top(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// Expands one host expression; its bracket groups expand left to right.
fn expand_one(item: &str) -> Option<Vec<String>> {
    let Some(open) = item.find('[') else {
        return (!item.contains(']')).then(|| vec![item.to_string()]);
    };
    let close = open + item[open..].find(']')?;
    let (prefix, ranges, rest) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    let tails = expand_one(rest)?;
    let mut out = Vec::new();
    for range in ranges.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let width = if lo.starts_with('0') { lo.len() } else { 0 };
        let (a, b): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
        if b < a || b - a > 1_000_000 {
            return None;
        }
        for n in a..=b {
            for tail in &tails {
                out.push(format!("{prefix}{n:0width$}{tail}"));
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expands_ranges_lists_and_padding() {
        assert_eq!(expand("n[1-3,7],login"), ["n1", "n2", "n3", "n7", "login"]);
        assert_eq!(expand("gpu[08-10]"), ["gpu08", "gpu09", "gpu10"]);
        assert_eq!(
            expand("r[1-2]-n[1-2]"),
            ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]
        );
        assert_eq!(expand("node1"), ["node1"]);
        assert!(expand("").is_empty());
    }

    #[test]
    fn invalid_text_is_kept_as_one_name() {
        assert_eq!(expand("n[3-1]"), ["n[3-1]"]);
        assert_eq!(expand("n[a]"), ["n[a]"]);
    }
}
