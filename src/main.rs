fn main() -> std::process::ExitCode {
    isa_gateway::cli::main()
}
