"""Model servers behind one interface, and the targets a benchmark can name."""
