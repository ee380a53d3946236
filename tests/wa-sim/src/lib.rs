//! wa-sim: a WhatsApp server stand-in.
