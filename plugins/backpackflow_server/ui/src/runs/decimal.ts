// Exact decimal sums of money the service sends as text ("0.000123"): floats would round, and
// the steps' costs must add up to the run's total to the last digit.

interface Scaled {
  units: bigint;
  scale: number;
}

function parse(text: string): Scaled | null {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match) return null;
  const fraction = match[3] ?? "";
  const units = BigInt(match[2] + fraction);
  return { units: match[1] ? -units : units, scale: fraction.length };
}

function format({ units, scale }: Scaled): string {
  const negative = units < 0n;
  let digits = (negative ? -units : units).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, "0");
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return negative ? `-${digits}` : digits;
}

/** a + b, exactly; text that is no decimal counts as 0. */
export function addDecimal(a: string, b: string): string {
  const x = parse(a) ?? { units: 0n, scale: 0 };
  const y = parse(b) ?? { units: 0n, scale: 0 };
  const scale = Math.max(x.scale, y.scale);
  const units = x.units * 10n ** BigInt(scale - x.scale) + y.units * 10n ** BigInt(scale - y.scale);
  return format({ units, scale });
}

/** a - b, exactly. */
export function subtractDecimal(a: string, b: string): string {
  return addDecimal(a, b.startsWith("-") ? b.slice(1) : `-${b}`);
}

/** Money as people read it: "$0.0000050" keeps every digit the service sent (no rounding). */
export function money(text: string): string {
  return text.startsWith("-") ? `-$${text.slice(1)}` : `$${text}`;
}
