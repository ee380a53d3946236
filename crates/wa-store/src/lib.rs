//! whatsapp-rust storage on PostgreSQL.
