"""The pure trading domain: candles, feeds, strategies, the paper broker and risk rules (API listed at the end)."""
