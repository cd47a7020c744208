/**
 * A copy of `s` that keeps nothing else alive.
 *
 * Header values are cut from the text of the whole message (V8 makes a substring a slice that points into its
 * parent), and a string built by concatenation points to its pieces. A key such as a transaction's
 * `branch|sent-by|method` therefore keeps the whole message text (~0.5-1 KB) alive for as long as the key is
 * kept: 32 s in the completed-transaction table. A round trip through bytes gives a flat string of its own.
 * (Converting to a number flattens a concatenation too, but optimised code may drop a conversion whose result
 * is unused.) Message text is decoded from UTF-8, so the round trip is lossless.
 */
export function detachFromMessage(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}
