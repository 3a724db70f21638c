"""One image: decode (with a pixel budget), resize, re-encode, and the closed vocabulary of failure reasons."""
