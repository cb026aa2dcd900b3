"""Reference servers the load tests compare gkit against."""
