// Types for the seek-bzip package (pure-JS bzip2 decoder), which ships none.
declare module 'seek-bzip' {
  interface Bunzip {
    /** Decode a whole .bz2 buffer; `multistream` also decodes concatenated streams (pbzip2 output). */
    decode(input: Uint8Array, output?: number | Uint8Array, multistream?: boolean): Uint8Array;
  }
  const bunzip: Bunzip;
  export default bunzip;
}
