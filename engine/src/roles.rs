//! Who may do what (O1): the operations each operator role allows. The session checks the
//! operator's passcode and store, then asks this table; the engine journals the operator.

use protocol::{AdminAction, OperatorRole};

/// May an operator of `role` carry out `action` on a card?
///
/// From the card rules' role table: cashiers (and hotels' front desks) work the counter,
/// customer service handles the holder's card and identity, finance handles money that leaves
/// the normal flow, head-office finance alone reverses loads (V5).
pub fn may(role: OperatorRole, action: AdminAction) -> bool {
    use AdminAction as A;
    use OperatorRole as R;
    match action {
        A::ReportLoss | A::Unfreeze | A::UnlockPin => role == R::CustomerService,
        A::Freeze => matches!(role, R::CustomerService | R::Finance | R::HqFinance),
        A::ChangePin | A::RedeemPoints => matches!(role, R::Cashier | R::FrontDesk | R::CustomerService),
        A::RecycleGift => matches!(role, R::Cashier | R::FrontDesk),
        A::ConfirmFunds | A::ReturnCard | A::Adjust => matches!(role, R::Finance | R::HqFinance),
        A::LoadReversal => role == R::HqFinance,
        // Linking a card to a staff member's operator is operator administration.
        A::SetStaff => role == R::Admin,
        A::RecordInvoice => matches!(role, R::Cashier | R::FrontDesk | R::Finance | R::HqFinance),
    }
}

/// How much of a member's data an operator of `role` may see (M3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberView {
    /// Everything: customer service, who registers members and checks IDs.
    Full,
    /// ID number and phone masked to their last four characters.
    Masked,
}

/// M3: customer service sees members in full; the counter and finance see them masked;
/// admins and managers have no business with members and are refused.
pub fn member_view(role: OperatorRole) -> Option<MemberView> {
    match role {
        OperatorRole::CustomerService => Some(MemberView::Full),
        OperatorRole::Cashier | OperatorRole::FrontDesk | OperatorRole::Finance | OperatorRole::HqFinance => {
            Some(MemberView::Masked)
        }
        OperatorRole::Admin | OperatorRole::Manager => None,
    }
}

/// May an operator of `role` list a card's postings (S9)? Those who serve the holder or
/// account for the money: not admins, not managers.
pub fn may_read_history(role: OperatorRole) -> bool {
    !matches!(role, OperatorRole::Admin | OperatorRole::Manager)
}

/// May an operator of `role` register members (M1) and replace their cards (L6)? Customer
/// service only.
pub fn may_manage_members(role: OperatorRole) -> bool {
    role == OperatorRole::CustomerService
}

/// May an operator of `role` create and change operators? Admins only.
pub fn may_set_operators(role: OperatorRole) -> bool {
    role == OperatorRole::Admin
}

/// May an operator of `role` approve an override of a restriction (R2) or a card return
/// (L10)? Managers only: the approval is a second person's, never the requester's own role.
pub fn may_approve(role: OperatorRole) -> bool {
    role == OperatorRole::Manager
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{AdminAction as A, OperatorRole as R};

    /// O1: the role table, action by action.
    #[test]
    fn o1_each_action_is_allowed_to_its_roles_only() {
        let allowed: &[(A, &[R])] = &[
            (A::ReportLoss, &[R::CustomerService]),
            (A::Freeze, &[R::CustomerService, R::Finance, R::HqFinance]),
            (A::Unfreeze, &[R::CustomerService]),
            (A::UnlockPin, &[R::CustomerService]),
            (A::ChangePin, &[R::Cashier, R::FrontDesk, R::CustomerService]),
            (A::ConfirmFunds, &[R::Finance, R::HqFinance]),
            (A::ReturnCard, &[R::Finance, R::HqFinance]),
            (A::RecycleGift, &[R::Cashier, R::FrontDesk]),
            (A::Adjust, &[R::Finance, R::HqFinance]),
            (A::LoadReversal, &[R::HqFinance]),
            (A::RedeemPoints, &[R::Cashier, R::FrontDesk, R::CustomerService]),
            (A::SetStaff, &[R::Admin]),
            (A::RecordInvoice, &[R::Cashier, R::FrontDesk, R::Finance, R::HqFinance]),
        ];
        assert_eq!(allowed.len(), A::ALL.len(), "every action is in the table");
        for (action, roles) in allowed {
            for role in R::ALL {
                assert_eq!(may(*role, *action), roles.contains(role), "{role} {action}");
            }
        }
        // V5: a load reversal is head-office finance's alone.
        assert!(!may(R::Finance, A::LoadReversal));
        // Admins administer products and operators, not the money on cards.
        assert!(A::ALL.iter().filter(|a| **a != A::SetStaff).all(|a| !may(R::Admin, *a)));
    }

    #[test]
    fn m3_o1_member_data_is_full_for_customer_service_and_masked_or_refused_otherwise() {
        assert_eq!(member_view(R::CustomerService), Some(MemberView::Full));
        for role in [R::Cashier, R::FrontDesk, R::Finance, R::HqFinance] {
            assert_eq!(member_view(role), Some(MemberView::Masked), "{role}");
        }
        assert_eq!(member_view(R::Admin), None);
        assert_eq!(member_view(R::Manager), None);
        assert!(R::ALL.iter().all(|r| may_manage_members(*r) == (*r == R::CustomerService)));
    }

    #[test]
    fn o1_only_admins_set_operators_and_only_managers_approve() {
        for role in R::ALL {
            assert_eq!(may_set_operators(*role), *role == R::Admin);
            assert_eq!(may_approve(*role), *role == R::Manager);
        }
    }
}
