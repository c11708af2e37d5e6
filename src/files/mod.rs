//! Files other containers can touch, handled as hostile: bounded, non-blocking reads that refuse
//! symlinks and non-regular files (`safe_fs`), atomic exact-mode writes of the token and secret
//! files (`token_file`), and directory watches for the JWT and token files that degrade to
//! timers (`watch`).

pub mod atomic_dir;
pub mod safe_fs;
pub mod token_file;
pub mod watch;
