//! A terminal at a desk for the end-to-end tests: signs on, numbers its requests, seals
//! operators' passcodes and PINs for them.

use protocol::client::Client;
use protocol::{
    AdminAction, CardNo, CardReply, OperatorAuth, OperatorRole, Request, Response, ResponseCode as C, Sealed,
    SecretKind, Verification,
};

use super::{admin, key_of};

pub struct Desk {
    pub client: Client,
    pub terminal_id: u32,
    pub stan: u32,
}

impl Desk {
    pub async fn open(client: Client, terminal_id: u32, store_id: u32) -> Desk {
        let mut desk = Desk { client, terminal_id, stan: 100 };
        let stan = desk.next();
        assert_eq!(desk.client.sign_on(stan, store_id).await.unwrap().code, C::Approved);
        desk
    }

    pub fn next(&mut self) -> u32 {
        self.stan += 1;
        self.stan
    }

    pub fn key(&self) -> protocol::TerminalKey {
        key_of(&admin(), self.terminal_id)
    }

    pub async fn call(&mut self, build: impl FnOnce(&protocol::TerminalKey, u32, u32) -> Request) -> Response {
        let stan = self.next();
        let request = build(&self.key(), self.terminal_id, stan);
        self.client.call(stan, request).await.unwrap()
    }

    pub async fn card(&mut self, build: impl FnOnce(&protocol::TerminalKey, u32, u32) -> Request) -> CardReply {
        match self.call(build).await {
            Response::Card { reply, .. } => reply,
            other => panic!("not a card reply: {other:?}"),
        }
    }

    /// `card_admin` by operator `operator` with `passcode`.
    pub async fn admin(&mut self, operator: u32, passcode: &str, card: CardNo, action: AdminAction) -> CardReply {
        self.admin_with(operator, passcode, card, action, 0, 0, 0, None).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn admin_with(
        &mut self,
        operator: u32,
        passcode: &str,
        card: CardNo,
        action: AdminAction,
        flags: u8,
        value: i64,
        ticket: u64,
        approver: Option<(u32, &str)>,
    ) -> CardReply {
        self.card(|key, terminal_id, stan| {
            let verification = match approver {
                None => Verification::NONE,
                Some((approver_id, passcode)) => Verification {
                    approver_id,
                    approver_passcode: Sealed::seal(key, SecretKind::Passcode, terminal_id, stan, passcode).unwrap(),
                    ..Verification::NONE
                },
            };
            Request::CardAdmin {
                operator: OperatorAuth::seal(key, terminal_id, stan, operator, passcode).unwrap(),
                card,
                action: action as u8,
                flags,
                value,
                original_txn_id: 0,
                ticket,
                verification,
                new_pin: Sealed::NONE,
            }
        })
        .await
    }

    /// `register_member` for `card` by operator `operator`.
    pub async fn register(
        &mut self,
        operator: (u32, &str),
        card: CardNo,
        member: &protocol::MemberData,
    ) -> protocol::MemberReply {
        let stan = self.next();
        let register = protocol::RegisterMember {
            operator: OperatorAuth::seal(&self.key(), self.terminal_id, stan, operator.0, operator.1).unwrap(),
            card,
            member: member.clone(),
        };
        match self.client.register_member(stan, 0, register).await.unwrap() {
            Response::Member { reply, .. } => *reply,
            other => panic!("not a member reply: {other:?}"),
        }
    }

    /// `member_query` for `card` by operator `operator`.
    pub async fn query(&mut self, operator: (u32, &str), card: CardNo) -> protocol::MemberReply {
        let response = self
            .call(|key, terminal_id, stan| Request::MemberQuery {
                operator: OperatorAuth::seal(key, terminal_id, stan, operator.0, operator.1).unwrap(),
                card,
            })
            .await;
        match response {
            Response::Member { reply, .. } => *reply,
            other => panic!("not a member reply: {other:?}"),
        }
    }

    /// `card_history` of `card` after `after_txn_id` by operator `operator`.
    pub async fn history(&mut self, operator: (u32, &str), card: CardNo, after_txn_id: u64) -> protocol::HistoryReply {
        let response = self
            .call(|key, terminal_id, stan| Request::CardHistory {
                operator: OperatorAuth::seal(key, terminal_id, stan, operator.0, operator.1).unwrap(),
                card,
                after_txn_id,
            })
            .await;
        match response {
            Response::History(reply) => *reply,
            other => panic!("not a history reply: {other:?}"),
        }
    }

    /// `replace_card` of `old` by `new` by operator `operator`, the fee paid by `method`.
    pub async fn replace(
        &mut self,
        operator: (u32, &str),
        old: CardNo,
        new: CardNo,
        flags: u8,
        method: u8,
    ) -> CardReply {
        self.card(|key, terminal_id, stan| Request::ReplaceCard {
            operator: OperatorAuth::seal(key, terminal_id, stan, operator.0, operator.1).unwrap(),
            old_card: old,
            new_card: new,
            flags,
            method,
        })
        .await
    }

    pub async fn set_operator(
        &mut self,
        by: (u32, &str),
        target: u32,
        role: OperatorRole,
        store_id: u32,
        passcode: Option<&str>,
    ) -> Response {
        self.call(|key, terminal_id, stan| Request::SetOperator {
            operator: OperatorAuth::seal(key, terminal_id, stan, by.0, by.1).unwrap(),
            target_id: target,
            role: role as u8,
            store_id,
            enabled: 1,
            new_passcode: passcode
                .map_or(Sealed::NONE, |p| Sealed::seal(key, SecretKind::NewPasscode, terminal_id, stan, p).unwrap()),
        })
        .await
    }
}
