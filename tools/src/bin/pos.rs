//! `pos`: a terminal simulator for trying the switch by hand (see [`cardswitch_tools::pos`]).

fn main() -> std::process::ExitCode {
    cardswitch_tools::pos::main()
}
