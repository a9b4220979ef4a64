"""Database engine, sessions and portable column types."""
