;; protocol/dot-simd.wat: the DATA codec's byte loop in WebAssembly with 128-bit SIMD.
;;
;; Why: in JavaScript every line costs two Buffer.indexOf calls (a C++ binding each, ~250
;; instructions) and every stuffed line a Buffer.subarray (~1,100); this module walks the
;; bytes 16 at a time, stops only at CR and LF, and writes its output into its own memory, so a
;; chunk costs two memcpy calls and one call here. dot.ts is the only user; its JavaScript
;; classes (ReferenceDataDecoder, ReferenceDotEncoder) are the specification this must equal,
;; and dot.test.ts checks it against them on random inputs cut at random places.
;;
;; Layout (set by the caller): input at [0, len); output at [$out, $out + 2*len + 2 + 16). Every
;; input byte gives at most two output bytes (a bare CR/LF becomes CRLF; a line-initial '.'
;; becomes '..'), plus two for a CR held from the previous chunk; the 16 bytes of slack let the
;; SIMD loop store a whole vector before it knows how much of it counts.
;;
;; Results are left in globals: $outLen, $state, $bare (bare newlines seen in this call),
;; $firstBare (output offset of the first one's CRLF, or -1), $modified (0 when the output is
;; exactly the input bytes consumed, so the caller can pass the input through without a copy).
;;
;; Decoder states (same numbers as dot.ts): 0 MID, 1 LINE_START, 2 AFTER_DOT, 3 AFTER_DOT_CR,
;; 4 PENDING_CR. Encoder states: 0 MID, 1 LINE_START, 2 PENDING_CR.
(module
  (memory (export "memory") 1)
  (global $out (mut i32) (i32.const 0))
  (global $outLen (export "outLen") (mut i32) (i32.const 0))
  (global $state (export "state") (mut i32) (i32.const 0))
  (global $bare (export "bare") (mut i32) (i32.const 0))
  (global $firstBare (export "firstBare") (mut i32) (i32.const -1))
  (global $modified (export "modified") (mut i32) (i32.const 0))

  (func (export "setOutput") (param $base i32)
    (global.set $out (local.get $base)))

  ;; A bare CR or LF at output offset $o: counted, remembered if first, written as CRLF.
  (func $bareAt (param $o i32)
    (global.set $bare (i32.add (global.get $bare) (i32.const 1)))
    (if (i32.lt_s (global.get $firstBare) (i32.const 0))
      (then (global.set $firstBare (local.get $o))))
    (global.set $modified (i32.const 1))
    (i32.store16 (i32.add (global.get $out) (local.get $o)) (i32.const 0x0a0d)))

  ;; Copies bytes from $i to the next CR or LF (or the end) to output offset $o; returns the new
  ;; $i and leaves the new $o in $outLen (a scratch use: the caller reads it back at once).
  ;; 32 bytes a turn while they last (two vectors, one test), then one 16-byte step (fewer
  ;; than 32 are left, so one is enough), then one byte at a time.
  (func $copyToBreak (param $i i32) (param $o i32) (param $len i32) (result i32)
    (local $cr v128)
    (local $lf v128)
    (local $v v128)
    (local $w v128)
    (local $dst i32)
    (local $m i32)
    (local $b i32)
    (local.set $cr (v128.const i8x16 13 13 13 13 13 13 13 13 13 13 13 13 13 13 13 13))
    (local.set $lf (v128.const i8x16 10 10 10 10 10 10 10 10 10 10 10 10 10 10 10 10))
    (local.set $dst (i32.add (global.get $out) (local.get $o)))
    (block $narrow
      (loop $wide
        (br_if $narrow (i32.gt_u (i32.add (local.get $i) (i32.const 32)) (local.get $len)))
        (local.set $v (v128.load (local.get $i)))
        (local.set $w (v128.load offset=16 (local.get $i)))
        (v128.store (local.get $dst) (local.get $v))
        (v128.store offset=16 (local.get $dst) (local.get $w))
        (local.set $m
          (i32.or
            (i8x16.bitmask (v128.or (i8x16.eq (local.get $v) (local.get $cr)) (i8x16.eq (local.get $v) (local.get $lf))))
            (i32.shl
              (i8x16.bitmask (v128.or (i8x16.eq (local.get $w) (local.get $cr)) (i8x16.eq (local.get $w) (local.get $lf))))
              (i32.const 16))))
        (if (i32.eqz (local.get $m))
          (then
            (local.set $i (i32.add (local.get $i) (i32.const 32)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
            (br $wide)))
        (local.set $m (i32.ctz (local.get $m)))
        (global.set $outLen (i32.sub (i32.add (local.get $dst) (local.get $m)) (global.get $out)))
        (return (i32.add (local.get $i) (local.get $m)))))
    (block $oneVector
      (br_if $oneVector (i32.gt_u (i32.add (local.get $i) (i32.const 16)) (local.get $len)))
      (local.set $v (v128.load (local.get $i)))
      (v128.store (local.get $dst) (local.get $v))
      (local.set $m (i8x16.bitmask (v128.or (i8x16.eq (local.get $v) (local.get $cr)) (i8x16.eq (local.get $v) (local.get $lf)))))
      (if (i32.eqz (local.get $m))
        (then
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
          (br $oneVector)))
      (local.set $m (i32.ctz (local.get $m)))
      (global.set $outLen (i32.sub (i32.add (local.get $dst) (local.get $m)) (global.get $out)))
      (return (i32.add (local.get $i) (local.get $m))))
    ;; Fewer than 16 bytes left: one at a time.
    (block $stop
      (loop $tail
        (br_if $stop (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (local.get $i)))
        (br_if $stop (i32.eq (local.get $b) (i32.const 13)))
        (br_if $stop (i32.eq (local.get $b) (i32.const 10)))
        (i32.store8 (local.get $dst) (local.get $b))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
        (br $tail)))
    (global.set $outLen (i32.sub (local.get $dst) (global.get $out)))
    (local.get $i))

  ;; DATA decoding: returns the offset just after end-of-data, or -1 when the input ran out first.
  (func (export "decode") (param $len i32) (param $st i32) (result i32)
    (local $i i32)
    (local $o i32)
    (local $b i32)
    (global.set $bare (i32.const 0))
    (global.set $firstBare (i32.const -1))
    (global.set $modified (i32.const 0))
    (block $exit
      (loop $top
        (br_if $exit (i32.ge_u (local.get $i) (local.get $len)))
        (block $mid
          (block $lineStart
            (block $afterDot
              (block $afterDotCr
                (block $pendingCr
                  (br_table $mid $lineStart $afterDot $afterDotCr $pendingCr $mid (local.get $st)))
                ;; PENDING_CR: the CR that ended the last chunk is a line end if an LF follows.
                (global.set $modified (i32.const 1))
                (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 10))
                  (then
                    (i32.store16 (i32.add (global.get $out) (local.get $o)) (i32.const 0x0a0d))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (local.set $st (i32.const 1)))
                  (else
                    (call $bareAt (local.get $o))
                    (local.set $st (i32.const 0))))
                (local.set $o (i32.add (local.get $o) (i32.const 2)))
                (br $top))
              ;; AFTER_DOT_CR: "." CR at a line start; LF completes end-of-data.
              (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 10))
                (then
                  (global.set $outLen (local.get $o))
                  (global.set $state (i32.const 5))
                  (return (i32.add (local.get $i) (i32.const 1)))))
              (call $bareAt (local.get $o))
              (local.set $o (i32.add (local.get $o) (i32.const 2)))
              (local.set $st (i32.const 0))
              (br $top))
            ;; AFTER_DOT: a line-initial '.' was dropped; a CR may start end-of-data.
            (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 13))
              (then
                (global.set $modified (i32.const 1))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (local.set $st (i32.const 3)))
              (else (local.set $st (i32.const 0))))
            (br $top))
          ;; LINE_START: after a real CRLF; a '.' here is stuffing (or the terminator's).
          (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 46))
            (then
              (global.set $modified (i32.const 1))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (local.set $st (i32.const 2)))
            (else (local.set $st (i32.const 0))))
          (br $top))
        ;; MID: copy to the next CR or LF, then classify it.
        (local.set $i (call $copyToBreak (local.get $i) (local.get $o) (local.get $len)))
        (local.set $o (global.get $outLen))
        (br_if $exit (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (local.get $i)))
        (if (i32.eq (local.get $b) (i32.const 13))
          (then
            (if (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $len))
              (then
                ;; A CR as the last byte: bare or not depends on the next chunk.
                (global.set $modified (i32.const 1))
                (local.set $i (local.get $len))
                (local.set $st (i32.const 4))
                (br $top)))
            (if (i32.eq (i32.load8_u (i32.add (local.get $i) (i32.const 1))) (i32.const 10))
              (then
                (i32.store16 (i32.add (global.get $out) (local.get $o)) (i32.const 0x0a0d))
                (local.set $i (i32.add (local.get $i) (i32.const 2)))
                (local.set $st (i32.const 1)))
              (else
                ;; A bare CR never starts a line: the state stays MID.
                (call $bareAt (local.get $o))
                (local.set $i (i32.add (local.get $i) (i32.const 1))))))
          (else
            ;; A bare LF (an LF after a CR was taken with it above).
            (call $bareAt (local.get $o))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))))
        (local.set $o (i32.add (local.get $o) (i32.const 2)))
        (br $top)))
    (global.set $outLen (local.get $o))
    (global.set $state (local.get $st))
    (i32.const -1))

  ;; DATA encoding: bare CR/LF become CRLF (and start a line), a line-initial '.' is doubled.
  (func (export "encode") (param $len i32) (param $st i32)
    (local $i i32)
    (local $o i32)
    (local $b i32)
    (global.set $bare (i32.const 0))
    (global.set $firstBare (i32.const -1))
    (global.set $modified (i32.const 0))
    (block $exit
      (loop $top
        (br_if $exit (i32.ge_u (local.get $i) (local.get $len)))
        (block $mid
          (block $lineStart
            (block $pendingCr
              (br_table $mid $lineStart $pendingCr $mid (local.get $st)))
            ;; PENDING_CR: the held CR becomes CRLF either way; a following LF is its own.
            (global.set $modified (i32.const 1))
            (i32.store16 (i32.add (global.get $out) (local.get $o)) (i32.const 0x0a0d))
            (local.set $o (i32.add (local.get $o) (i32.const 2)))
            (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 10))
              (then (local.set $i (i32.add (local.get $i) (i32.const 1)))))
            (local.set $st (i32.const 1))
            (br $top))
          ;; LINE_START: a '.' gets a second one before it.
          (if (i32.eq (i32.load8_u (local.get $i)) (i32.const 46))
            (then
              (global.set $modified (i32.const 1))
              (i32.store8 (i32.add (global.get $out) (local.get $o)) (i32.const 46))
              (local.set $o (i32.add (local.get $o) (i32.const 1)))))
          (local.set $st (i32.const 0))
          (br $top))
        ;; MID
        (local.set $i (call $copyToBreak (local.get $i) (local.get $o) (local.get $len)))
        (local.set $o (global.get $outLen))
        (br_if $exit (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (local.get $i)))
        (if (i32.eq (local.get $b) (i32.const 13))
          (then
            (if (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $len))
              (then
                (global.set $modified (i32.const 1))
                (local.set $i (local.get $len))
                (local.set $st (i32.const 2))
                (br $top)))
            (if (i32.eq (i32.load8_u (i32.add (local.get $i) (i32.const 1))) (i32.const 10))
              (then (local.set $i (i32.add (local.get $i) (i32.const 2))))
              (else
                (global.set $modified (i32.const 1))
                (local.set $i (i32.add (local.get $i) (i32.const 1))))))
          (else
            (global.set $modified (i32.const 1))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))))
        (i32.store16 (i32.add (global.get $out) (local.get $o)) (i32.const 0x0a0d))
        (local.set $o (i32.add (local.get $o) (i32.const 2)))
        (local.set $st (i32.const 1))
        (br $top)))
    (global.set $outLen (local.get $o))
    (global.set $state (local.get $st)))
)
