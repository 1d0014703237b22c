//! Coordination beyond alerts: cases handled by several provinces,
//! assistance requests, coordinated inspections, meetings, retractions and
//! the statistics over them.
//!
//! Everything here is pure: validation of what local systems submit
//! ([`validate`]) and the folds that turn signed entries into state
//! ([`case`], [`assistance`], [`inspection`], [`report`]). Every node runs
//! the same folds over the entries it holds, so nodes holding the same
//! entries show the same state.

pub mod assistance;
pub mod case;
pub mod inspection;
pub mod report;
pub mod validate;

/// The estimated value of goods in đồng, summed without overflow (a
/// peer's record may hold any amount).
pub fn goods_value_vnd(goods: &[lienthong_proto::v1::Goods]) -> u64 {
    goods
        .iter()
        .fold(0, |sum, g| sum.saturating_add(g.estimated_value_vnd))
}

#[cfg(test)]
mod tests {
    #[test]
    fn goods_values_add_up_without_overflow() {
        let g = |v| lienthong_proto::v1::Goods {
            estimated_value_vnd: v,
            ..Default::default()
        };
        assert_eq!(super::goods_value_vnd(&[g(2), g(3)]), 5);
        assert_eq!(super::goods_value_vnd(&[g(u64::MAX - 1), g(5)]), u64::MAX);
    }
}
