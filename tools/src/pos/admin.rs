//! `cardswitch admin`: the administrative operations of the card rules for customer service,
//! finance and the administrators, sent to a running switch over the protocol.
//!
//! It acts as the switch's admin terminal (the admin credential file), signed on at the store
//! the operation is done at (`--store`, journaled with what it posts), and every operation
//! names the operator carrying it out with its passcode (O1), which travels sealed. The
//! requests, their checks before anything is sent and the printed replies are those of `pos`,
//! so both speak the protocol the same way; the commands are named by what they do
//! (`freeze CARD`, `history CARD`) rather than by message.
//!
//! Exit status: 0 approved, 1 declined, 2 usage, connection or protocol error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use protocol::{AdminAction, CardNo};

use super::{
    parse_card, parse_stan, run_cli, AdminArgs, CardActionArgs, Cli, HistoryArgs, ImportRangeArgs, MemberArgs, Op,
    OperatorArgs, ProvisionArgs, RegisterArgs, ReplaceArgs, SetOperatorArgs, SetProductArgs, TerminalStateArgs,
    EXIT_ERROR,
};

/// The name errors are printed under.
const PROGRAM: &str = "cardswitch admin";

/// What `cardswitch admin` is told besides where the switch is: the admin credential, the
/// store, how to print, and the operation.
#[derive(Debug, Args)]
#[command(after_help = "Each operation names its operator with --operator OPERATOR_ID \
                  --passcode-file FILE (the passcode on the file's first line); the operator's \
                  role and store decide what it may do (O1). Passcodes are read from files, never \
                  the command line; they and the PINs travel sealed under the admin terminal's \
                  key, never in clear.\n\nExit status: 0 approved, 1 declined (the reply's code is \
                  printed), 2 usage, connection or protocol error.")]
pub struct AdminCli {
    /// Admin credential file (`terminal <id>` and `key <hex>`); default: `secrets.admin_key_file`
    /// of --config, else $CARDSWITCH_HOME/admin.key, as the switch uses.
    #[arg(long, value_name = "PATH", global = true)]
    pub admin_key_file: Option<PathBuf>,
    /// Store the operation is done at (required): the admin terminal signs on there, and what
    /// the operation posts is journaled with it. An operator of one store acts at its own.
    #[arg(long, value_name = "ID", global = true)]
    pub store: Option<u32>,
    /// Print one JSON object instead of the readable block.
    #[arg(long, global = true)]
    pub json: bool,
    /// Trace number of the operation (1..=2147483647); default: milliseconds since local
    /// midnight + 1.
    #[arg(long, value_name = "N", value_parser = parse_stan, global = true)]
    pub stan: Option<u32>,
    /// Mark the operation as a retransmission; use with the original --stan and the same
    /// command, to learn the outcome of one whose reply was lost.
    #[arg(long, global = true)]
    pub retransmit: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The operations.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List every posting of a card, oldest first (S9): business date, time, kind, store,
    /// terminal, operator, amount, and the cash, bonus and held balances after each. Asks
    /// page after page until there are no more.
    History(HistoryCmd),
    /// Show the registered holder of a card: in full to customer service, masked (ID number
    /// and phone to their last four characters) to the others.
    Member(MemberArgs),
    /// Register the holder of a sold real-name card (customer service only, M2).
    RegisterMember(RegisterArgs),
    /// Replace the registered member card OLD by NEW, a card in stock of the same product
    /// (customer service only): OLD closes, its value, points, tier and validity move to NEW.
    ReplaceCard(ReplaceArgs),
    /// L5: report a card lost; it is blocked at once.
    ReportLoss(CardActionArgs),
    /// Freeze a card.
    Freeze(CardActionArgs),
    /// L8: make a frozen card active again (--id-checked).
    Unfreeze(CardActionArgs),
    /// L4: unlock a card locked by wrong PINs (--id-checked; --new-pin optional).
    UnlockPin(CardActionArgs),
    /// L3: change a card's PIN (--pin, the current one, and --new-pin).
    ChangePin(CardActionArgs),
    /// L2: confirm the funds of a card sold by cheque or transfer (finance).
    ConfirmFunds(CardActionArgs),
    /// L10: take a card back and pay out its cash value (--invoice-returned when the load's
    /// invoice comes back, so no tax is withheld).
    ReturnCard(CardActionArgs),
    /// L9: close a gift card spent to zero, returned by the store.
    RecycleGift(CardActionArgs),
    /// Correct a card's cash (or with --bonus its bonus) balance by --amount against
    /// --ticket.
    Adjust(CardActionArgs),
    /// V5: reverse --amount of load --original against fault --ticket (head-office finance).
    LoadReversal(CardActionArgs),
    /// K4: redeem --points as bonus value (or with --for-gift for a gift).
    RedeemPoints(CardActionArgs),
    /// V4, T9: make the card staff member --staff-operator's (0: no longer a staff card).
    SetStaff(CardActionArgs),
    /// Record an invoice of --amount issued for load or card sale --original.
    RecordInvoice(CardActionArgs),
    /// Create or change an operator: its role, store, state and passcode (admin operators).
    SetOperator(SetOperatorArgs),
    /// Enable or disable a product, with a special product's approved discount and quantity
    /// (admin operators); the catalog version goes up by one.
    SetProduct(SetProductArgs),
    /// Import the card numbers FIRST..=LAST for a product and store (stock, not yet sold).
    ImportRange(ImportRangeArgs),
    /// Provision a terminal with a key derived from the admin credential; --out writes its
    /// credential file for the terminal.
    Provision(ProvisionArgs),
    /// Enable or disable a terminal.
    TerminalState(TerminalStateArgs),
}

/// `history CARD`: every posting, unless `--one-page`.
#[derive(Debug, Args)]
pub struct HistoryCmd {
    /// Card number, 8 to 19 digits.
    #[arg(value_parser = parse_card)]
    card: CardNo,
    /// List the postings after this txn id (0: from the first).
    #[arg(long, value_name = "TXN", default_value_t = 0)]
    after: u64,
    /// Ask once: the first page only (at most 100 postings), saying whether more follow.
    #[arg(long)]
    one_page: bool,
    #[command(flatten)]
    operator: OperatorArgs,
}

impl AdminCommand {
    /// The `pos` operation that carries it out.
    fn into_op(self) -> Op {
        use AdminAction as A;
        let action = |action, args| Op::Admin(AdminArgs { action, args });
        match self {
            Self::History(HistoryCmd { card, after, one_page, operator }) => {
                Op::History(HistoryArgs { card, after, all: !one_page, operator })
            }
            Self::Member(args) => Op::Member(args),
            Self::RegisterMember(args) => Op::RegisterMember(args),
            Self::ReplaceCard(args) => Op::ReplaceCard(args),
            Self::ReportLoss(args) => action(A::ReportLoss, args),
            Self::Freeze(args) => action(A::Freeze, args),
            Self::Unfreeze(args) => action(A::Unfreeze, args),
            Self::UnlockPin(args) => action(A::UnlockPin, args),
            Self::ChangePin(args) => action(A::ChangePin, args),
            Self::ConfirmFunds(args) => action(A::ConfirmFunds, args),
            Self::ReturnCard(args) => action(A::ReturnCard, args),
            Self::RecycleGift(args) => action(A::RecycleGift, args),
            Self::Adjust(args) => action(A::Adjust, args),
            Self::LoadReversal(args) => action(A::LoadReversal, args),
            Self::RedeemPoints(args) => action(A::RedeemPoints, args),
            Self::SetStaff(args) => action(A::SetStaff, args),
            Self::RecordInvoice(args) => action(A::RecordInvoice, args),
            Self::SetOperator(args) => Op::SetOperator(args),
            Self::SetProduct(args) => Op::SetProduct(args),
            Self::ImportRange(args) => Op::ImportRange(args),
            Self::Provision(args) => Op::Provision(args),
            Self::TerminalState(args) => Op::TerminalState(args),
        }
    }
}

impl AdminCli {
    /// Carries the operation out against the switch at `addr` as its admin terminal, with
    /// `admin_key_file` when --admin-key-file is not given, and prints the reply.
    pub fn run(self, addr: String, admin_key_file: Option<PathBuf>) -> ExitCode {
        let Some(store) = self.store.filter(|store| *store != 0) else {
            eprintln!(
                "{PROGRAM}: give --store ID, the store the operation is done at (it signs on there, and what it \
                 posts is journaled with it)"
            );
            return ExitCode::from(EXIT_ERROR);
        };
        let cli = Cli {
            addr,
            terminal: None,
            key_file: None,
            admin_key_file: self.admin_key_file.or(admin_key_file),
            store,
            stan: self.stan,
            retransmit: self.retransmit,
            json: self.json,
            cashier: None,
            cashier_passcode_file: None,
            op: self.command.into_op(),
            program: PROGRAM,
        };
        run_cli(&cli)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use protocol::{AdminFlags, Request};

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        admin: AdminCli,
    }

    fn parse(args: &[&str]) -> Result<AdminCli, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).map(|w| w.admin)
    }

    #[test]
    fn command_definition_is_consistent() {
        Wrapper::command().debug_assert();
    }

    #[test]
    fn an_action_is_the_pos_card_admin_request() {
        let admin = parse(&[
            "--store",
            "21",
            "unfreeze",
            "6200880000000017",
            "--operator",
            "41",
            "--passcode-file",
            "p",
            "--id-checked",
        ])
        .unwrap();
        assert_eq!(admin.store, Some(21));
        let Op::Admin(args) = admin.command.into_op() else { panic!("not a card operation") };
        let Ok(Request::CardAdmin { card, action, flags, operator, .. }) = args.request() else { panic!() };
        assert_eq!(
            (card, action, flags, operator.operator_id),
            (CardNo(6_200_880_000_000_017), AdminAction::Unfreeze as u8, AdminFlags::ID_CHECKED, 41)
        );
        // What the action does not take is refused before anything is sent, as by pos.
        let admin = parse(&[
            "--store",
            "21",
            "freeze",
            "6200880000000017",
            "--operator",
            "41",
            "--passcode-file",
            "p",
            "--bonus",
        ])
        .unwrap();
        let Op::Admin(args) = admin.command.into_op() else { panic!("not a card operation") };
        assert!(args.request().unwrap_err().contains("--bonus is for adjust only"));
    }

    #[test]
    fn history_follows_every_page_unless_asked_for_one() {
        let all = parse(&["--store", "1", "history", "62008800", "--operator", "41", "--passcode-file", "p"]).unwrap();
        assert!(matches!(all.command.into_op(), Op::History(HistoryArgs { all: true, after: 0, .. })));
        let one = parse(&[
            "--store",
            "1",
            "--json",
            "history",
            "62008800",
            "--one-page",
            "--after",
            "7",
            "--operator",
            "41",
            "--passcode-file",
            "p",
        ])
        .unwrap();
        assert!(one.json);
        assert!(matches!(one.command.into_op(), Op::History(HistoryArgs { all: false, after: 7, .. })));
    }

    #[test]
    fn the_operator_is_required_and_the_options_go_anywhere() {
        let late = parse(&["history", "62008800", "--operator", "41", "--passcode-file", "p", "--store", "3"]);
        assert_eq!(late.unwrap().store, Some(3));
        for args in [
            &["--store", "1", "history", "62008800"][..],
            &["--store", "1", "freeze", "123", "--operator", "41", "--passcode-file", "p"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
