//! Decimal text to `f64`, correctly rounded (round half to even), as Go's
//! `strconv.ParseFloat(s, 64)` and Rust's `str::parse::<f64>` both round.
//!
//! Why not `str::parse`: its Eisel-Lemire path brings a 10 KB table of powers of five, and with
//! its code about 18 KB of binary, for the few numbers templates parse (float literals,
//! `parseJSON`, `toYAML`/`toTOML` of Vault's numbers). This is the textbook slow-but-exact method
//! instead: exact products for short inputs (Clinger's fast path), otherwise the digits are
//! halved or doubled as a decimal until the value lies in [0.5, 1), and the 53 bits are read off.

/// Digits kept; more only decide ties, so they are remembered as "something was cut" (a tie
/// between two doubles needs at most 767 significant digits).
const MAX_DIGITS: usize = 800;

/// A decimal `0.d1d2d3... × 10^dp`: digits 0-9, no leading zeros; `cut` if non-zero digits
/// were dropped past [`MAX_DIGITS`].
struct Decimal {
    d: Vec<u8>,
    dp: i32,
    cut: bool,
}

impl Decimal {
    fn trim(&mut self) {
        while self.d.last() == Some(&0) {
            self.d.pop();
        }
        if self.d.len() > MAX_DIGITS {
            self.cut |= self.d[MAX_DIGITS..].iter().any(|&x| x != 0);
            self.d.truncate(MAX_DIGITS);
        }
    }

    /// Divides by `2^k` (`k` <= 60): long division from the top digit.
    fn halve(&mut self, k: u32) {
        let mut rem = 0u64;
        let mut out = Vec::with_capacity(self.d.len() + k as usize);
        let mut i = 0;
        // digits read before the quotient's first non-zero digit move the point
        loop {
            if i < self.d.len() {
                rem = rem * 10 + u64::from(self.d[i]);
                i += 1;
            } else if rem == 0 {
                break;
            } else {
                rem *= 10;
            }
            if rem >> k != 0 {
                break;
            }
            self.dp -= 1;
        }
        loop {
            out.push((rem >> k) as u8);
            rem &= (1 << k) - 1;
            if i < self.d.len() {
                rem = rem * 10 + u64::from(self.d[i]);
                i += 1;
            } else if rem == 0 || out.len() > MAX_DIGITS {
                self.cut |= rem != 0;
                break;
            } else {
                rem *= 10;
            }
        }
        self.d = out;
        self.trim();
    }

    /// Multiplies by `2^k` (`k` <= 60): from the last digit, carrying.
    fn double(&mut self, k: u32) {
        let mut carry = 0u64;
        for x in self.d.iter_mut().rev() {
            let v = (u64::from(*x) << k) + carry;
            *x = (v % 10) as u8;
            carry = v / 10;
        }
        let mut head = Vec::new();
        while carry > 0 {
            head.push((carry % 10) as u8);
            carry /= 10;
        }
        self.dp += head.len() as i32;
        head.reverse();
        head.append(&mut self.d);
        self.d = head;
        self.trim();
    }

    /// The integer part (at most 19 digits here) and whether the rest rounds it up, half to even.
    fn round_int(&self) -> u64 {
        let n = self.dp.max(0) as usize;
        let mut m = 0u64;
        for i in 0..n {
            m = m * 10 + u64::from(self.d.get(i).copied().unwrap_or(0));
        }
        let up = match self.d.get(n) {
            Some(&x) if x > 5 => true,
            Some(5) => self.cut || self.d.len() > n + 1 || m % 2 == 1,
            _ => false,
        };
        m + u64::from(up)
    }
}

/// `2^k` as an `f64`, for `k` in -1074..=1023.
fn pow2(k: i32) -> f64 {
    if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else {
        f64::from_bits(1 << (k + 1074))
    }
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (digits on at least one side of the point;
/// no `inf`/`nan`); out of range gives an infinity or zero, as `str::parse` does.
pub(crate) fn parse(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let neg = matches!(b.first(), Some(b'-'));
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut dec = Decimal {
        d: Vec::new(),
        dp: 0,
        cut: false,
    };
    let (mut seen, mut point) = (false, false);
    while i < b.len() {
        match b[i] {
            b'.' if !point => point = true,
            c @ b'0'..=b'9' => {
                seen = true;
                if c == b'0' && dec.d.is_empty() {
                    // a leading zero only moves the point
                    dec.dp -= i32::from(point);
                } else {
                    dec.d.push(c - b'0');
                    dec.dp += i32::from(!point);
                }
            }
            _ => break,
        }
        i += 1;
    }
    if !seen {
        return None;
    }
    if i < b.len() {
        if !matches!(b[i], b'e' | b'E') {
            return None;
        }
        i += 1;
        let eneg = matches!(b.get(i), Some(b'-'));
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        let mut e = 0i32;
        for &c in &b[i..] {
            if !c.is_ascii_digit() {
                return None;
            }
            // past any meaningful exponent: the value is zero or infinite either way
            e = (e * 10 + i32::from(c - b'0')).min(100_000);
        }
        dec.dp += if eneg { -e } else { e };
    }
    dec.trim();
    let v = magnitude(dec);
    Some(if neg { -v } else { v })
}

/// The `f64` nearest to a non-negative decimal.
fn magnitude(mut dec: Decimal) -> f64 {
    if dec.d.is_empty() {
        return 0.0;
    }
    if dec.dp > 310 {
        return f64::INFINITY;
    }
    if dec.dp < -330 {
        return 0.0;
    }
    // exact operands and one rounding: Clinger's fast path
    let n = dec.d.len() as i32;
    let k = dec.dp - n;
    if n <= 15 && !dec.cut && (-22..=22).contains(&k) {
        let m = dec.d.iter().fold(0u64, |m, &x| m * 10 + u64::from(x)) as f64;
        let p = (0..k.abs()).fold(1.0f64, |p, _| p * 10.0);
        return if k < 0 { m / p } else { m * p };
    }
    // bring the value into [0.5, 1), counting the binary exponent
    let mut e = 0i32;
    while dec.dp > 1 {
        let k = (3 * (dec.dp - 1)).min(60) as u32;
        dec.halve(k);
        e += k as i32;
    }
    while dec.dp > 0 {
        dec.halve(1);
        e += 1;
    }
    while dec.dp < 0 {
        let k = (3 * -dec.dp).min(60) as u32;
        dec.double(k);
        e -= k as i32;
    }
    while dec.d[0] < 5 {
        dec.double(1);
        e -= 1;
    }
    // value = v × 2^e, v in [0.5, 1): the f64 is 1.x × 2^(e-1)
    if e - 1 > 1023 {
        return f64::INFINITY;
    }
    // 53 bits of mantissa, fewer below the normal range
    let bits = 53 - (-1022 - (e - 1)).max(0);
    if bits < 0 {
        return 0.0;
    }
    dec.double(bits as u32);
    let m = dec.round_int();
    // exact: m <= 2^53 and the power of two is representable; only e = 1024 can overflow
    m as f64 * pow2(e - bits)
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn same(s: &str) {
        let want = s.parse::<f64>().ok();
        let got = parse(s);
        assert_eq!(
            got.map(f64::to_bits),
            want.map(f64::to_bits),
            "{s:?}: {got:?} vs {want:?}"
        );
    }

    #[test]
    fn agrees_with_std_on_hard_and_edge_cases() {
        for s in [
            "0",
            "-0",
            "+0",
            "0.0",
            "-0.0",
            "1",
            "1.",
            ".5",
            "-.5",
            "1e5",
            "1E+5",
            "1e-5",
            "00012.3400",
            "3.1",
            "0.1",
            "0.3",
            "1.5",
            "2.5e-3",
            "123456789012345",
            "1234567890123456",
            "12345678901234567890",
            "12345678901234567000",
            "9007199254740993",
            "9007199254740992.5",
            "9007199254740993.0000000000000000001",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "1e308",
            "1e309",
            "2e308",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.4703282292062327208828439643411068618252990130716238221279284125033775364e-324",
            "1e-324",
            "3e-324",
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "2.2250738585072014e-308",
            "2.225073858507201136057409796709131975934819546351645648e-308",
            "1e23",
            "8.98846567431158e307",
            "5e-324",
            "0.000001",
            "1e-7",
            "1e21",
            "1e22",
            "123.456e-10",
            "7.038531e-26",
            "1e99999999999999999999",
            "1e-99999999999999999999",
            "0e99999",
            "0.0000000000000000000000000000001e31",
            ".",
            "",
            "-",
            "+",
            "e5",
            "1e",
            "1e+",
            "1.2.3",
            "1e5x",
            "1_0.5",
            "0x1p3",
            "--1",
            "1..2",
            "1 ",
            " 1",
            "1.e5",
            "5.e-1",
        ] {
            same(s);
        }
        // the one difference, never met: callers pass JSON numbers, or literals with `.`/`e`
        for s in ["inf", "-Infinity", "NaN"] {
            assert_eq!(parse(s), None, "{s}");
        }
        // a tie broken only by a digit far past the 800 kept
        let mut tie = String::from("9007199254740993");
        same(&tie);
        tie.push('.');
        tie.push_str(&"0".repeat(900));
        same(&tie);
        tie.push('1');
        same(&tie);
        let long = format!("0.{}5e-300", "3".repeat(1000));
        same(&long);
    }

    #[test]
    fn agrees_with_std_on_many_random_numbers() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let r = next();
            // every double's shortest and long forms
            let f = f64::from_bits(r);
            if f.is_finite() {
                same(&format!("{f:e}"));
                same(&format!("{f:.40e}"));
            }
            // short decimals across the exponent range
            let digits = (next() % 10u64.pow((r % 19) as u32 + 1)).to_string();
            let exp = (r >> 40) as i32 % 700 - 350;
            same(&format!("{digits}e{exp}"));
            same(&format!("0.{digits}e{}", exp / 3));
        }
    }
}
