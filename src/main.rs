//! Entry point: hands over to the CLI and turns its outcome into the process exit code.

fn main() -> std::process::ExitCode {
    kube_aws::cli::main()
}
