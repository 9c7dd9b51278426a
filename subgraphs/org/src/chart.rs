//! The org chart in memory: every member of a tenant, indexed by id and by
//! manager, built from one query so that `manager`, `reports` and the whole
//! chart resolve without further SQL, however many members and levels.

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::Member;

/// A tenant's members, indexed for walking the chart both ways.
#[derive(Debug, Default)]
pub struct OrgChart {
    members: HashMap<Uuid, Member>,
    reports: HashMap<Uuid, Vec<Uuid>>,
    roots: Vec<Uuid>,
}

impl OrgChart {
    /// Indexes `members` (oldest first, so roots and reports keep that
    /// order). A member whose manager is not among them counts as a root,
    /// so it stays visible.
    pub fn new(members: Vec<Member>) -> Self {
        let present: std::collections::HashSet<Uuid> = members.iter().map(|m| m.id).collect();
        let mut reports: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        let mut roots = Vec::new();
        for member in &members {
            match member.manager_id {
                Some(manager) if present.contains(&manager) => {
                    reports.entry(manager).or_default().push(member.id)
                }
                _ => roots.push(member.id),
            }
        }
        let members = members.into_iter().map(|m| (m.id, m)).collect();
        Self {
            members,
            reports,
            roots,
        }
    }

    /// The member with this id.
    pub fn member(&self, id: Uuid) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The members without a manager, oldest first.
    pub fn roots(&self) -> impl Iterator<Item = &Member> {
        self.roots.iter().filter_map(|id| self.members.get(id))
    }

    /// The member's direct reports, oldest first.
    pub fn reports(&self, id: Uuid) -> impl Iterator<Item = &Member> {
        let ids = self.reports.get(&id).map(Vec::as_slice).unwrap_or_default();
        ids.iter().filter_map(|id| self.members.get(id))
    }

    /// Every member in chart order: each root, then its reports depth
    /// first, siblings oldest first, so a member always comes after its
    /// manager. Iterative, so no depth of chart can exhaust the stack.
    pub fn in_chart_order(&self) -> Vec<&Member> {
        let mut ordered = Vec::with_capacity(self.members.len());
        // Pushed in reverse so that the oldest sibling is popped first.
        let mut pending: Vec<Uuid> = self.roots.iter().rev().copied().collect();
        while let Some(id) = pending.pop() {
            let Some(member) = self.members.get(&id) else {
                continue;
            };
            ordered.push(member);
            if let Some(reports) = self.reports.get(&id) {
                pending.extend(reports.iter().rev());
            }
        }
        ordered
    }

    /// How many members the chart holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the chart has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The number of levels below and including the roots (0 when empty).
    pub fn depth(&self) -> usize {
        let mut depth = 0;
        let mut level: Vec<Uuid> = self.roots.clone();
        while !level.is_empty() {
            depth += 1;
            level = level
                .iter()
                .flat_map(|id| self.reports(*id).map(|m| m.id))
                .collect();
        }
        depth
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn member(manager_id: Option<Uuid>) -> Member {
        let now = Utc::now();
        Member {
            id: Uuid::now_v7(),
            name: "n".into(),
            title: "t".into(),
            manager_id,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn members_hang_under_their_managers_in_creation_order() {
        let ceo = member(None);
        let cto = member(Some(ceo.id));
        let cfo = member(Some(ceo.id));
        let engineer = member(Some(cto.id));
        let advisor = member(None);
        let chart = OrgChart::new(vec![
            ceo.clone(),
            cto.clone(),
            cfo.clone(),
            engineer.clone(),
            advisor.clone(),
        ]);

        let roots: Vec<Uuid> = chart.roots().map(|m| m.id).collect();
        assert_eq!(roots, [ceo.id, advisor.id]);
        let under_ceo: Vec<Uuid> = chart.reports(ceo.id).map(|m| m.id).collect();
        assert_eq!(under_ceo, [cto.id, cfo.id]);
        assert_eq!(chart.reports(engineer.id).count(), 0);
        assert_eq!(chart.depth(), 3);
        assert_eq!(chart.len(), 5);

        let ordered: Vec<Uuid> = chart.in_chart_order().iter().map(|m| m.id).collect();
        assert_eq!(ordered, [ceo.id, cto.id, engineer.id, cfo.id, advisor.id]);
    }

    #[test]
    fn a_chart_far_deeper_than_a_stack_is_ordered_manager_first() {
        let mut members = vec![member(None)];
        for _ in 1..100_000 {
            let manager = members.last().map(|m| m.id);
            members.push(member(manager));
        }
        let chart = OrgChart::new(members.clone());
        let ordered: Vec<Uuid> = chart.in_chart_order().iter().map(|m| m.id).collect();
        let expected: Vec<Uuid> = members.iter().map(|m| m.id).collect();
        assert_eq!(ordered, expected);
    }

    #[test]
    fn a_member_whose_manager_is_missing_stays_visible_as_a_root() {
        let orphan = member(Some(Uuid::now_v7()));
        let chart = OrgChart::new(vec![orphan.clone()]);
        assert_eq!(chart.roots().next().map(|m| m.id), Some(orphan.id));
        assert!(OrgChart::new(Vec::new()).is_empty());
    }
}
