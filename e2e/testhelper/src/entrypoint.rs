//! `entrypoint-tester`: prints all of the process's arguments as Go prints a string slice.

/// `[arg0 arg1 ...]`, Go's `fmt.Printf("%v\n", os.Args)` without the newline.
pub fn format_args(args: &[String]) -> String {
    format!("[{}]", args.join(" "))
}

/// Runs the subcommand: prints every argument, including argv[0] and the subcommand.
pub fn run(all_args: &[String]) -> i32 {
    println!("{}", format_args(all_args));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go_slices() {
        let args: Vec<String> = ["/agnhost-2", "entrypoint-tester", "override", "arguments"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            format_args(&args),
            "[/agnhost-2 entrypoint-tester override arguments]"
        );
        assert_eq!(format_args(&[]), "[]");
    }
}
