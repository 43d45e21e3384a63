//! Decodes a captured Kubernetes protobuf body and prints its JSON form:
//! `cargo run -p rkube-protobuf --example decode -- body.pb`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: decode <file>");
        return ExitCode::FAILURE;
    };
    let body = match std::fs::read(&path) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rkube_protobuf::decode_object(&body, None) {
        Ok(obj) => {
            println!("{obj}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::FAILURE
        }
    }
}
