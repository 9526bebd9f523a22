//! web::i18n: the desk's words in French (the default) and English. The
//! language comes from `?lang=` on the request, then the `lang` cookie (set by
//! `/lang/{code}`), then French.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "fr" => Some(Lang::Fr),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// From the request: `lang=` in the query, then the cookie, then French.
    pub fn from_parts(parts: &axum::http::request::Parts) -> Lang {
        let q = parts.uri.query().unwrap_or("");
        q.split('&')
            .find_map(|kv| kv.strip_prefix("lang=").and_then(Lang::parse))
            .or_else(|| super::session::cookie(&parts.headers, "lang").and_then(|v| Lang::parse(&v)))
            .unwrap_or(Lang::Fr)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Lang, Self::Rejection> {
        Ok(Lang::from_parts(parts))
    }
}

/// (key, French, English).
const WORDS: &[(&str, &str, &str)] = &[
    ("title", "Bureau des litiges", "Dispute desk"),
    ("login", "Connexion", "Sign in"),
    ("email", "Adresse e-mail", "Email address"),
    ("password", "Mot de passe", "Password"),
    ("logout", "Se déconnecter", "Sign out"),
    ("bad_login", "Adresse ou mot de passe incorrect.", "Wrong email or password."),
    ("approvals", "À approuver", "Approvals"),
    ("my_cases", "Mes dossiers", "My cases"),
    ("open_cases", "Dossiers ouverts", "Open cases"),
    ("unlinked", "Messages non rattachés", "Unlinked messages"),
    ("dashboard", "Tableau de bord", "Dashboard"),
    ("pending_drafts", "Brouillons en attente d'approbation", "Drafts waiting for approval"),
    ("oldest_first", "les plus anciens d'abord", "oldest first"),
    ("none_pending", "Aucun brouillon en attente.", "No draft waiting."),
    ("draft", "Brouillon", "Draft"),
    ("reply", "Réponse", "Reply"),
    ("reminder", "Relance", "Reminder"),
    ("to", "À", "To"),
    ("subject", "Objet", "Subject"),
    ("client_message", "Message du client", "Client's message"),
    ("new_text", "Nouveau texte", "New text"),
    ("quoted", "Historique cité", "Quoted history"),
    ("no_message", "Pas de message client (relance programmée).", "No client message (scheduled reminder)."),
    ("invoices", "Factures", "Invoices"),
    ("invoice", "Facture", "Invoice"),
    ("amount", "Montant", "Amount"),
    ("due_date", "Échéance", "Due date"),
    ("paid", "Payé", "Paid"),
    ("classification", "Classification", "Classification"),
    ("confidence", "confiance", "confidence"),
    ("reasons", "Raisons", "Reasons"),
    ("brief", "Note d'appel", "Call brief"),
    ("save_edit", "Enregistrer la modification", "Save the edit"),
    ("approve_send", "Approuver et envoyer", "Approve and send"),
    ("reject", "Rejeter", "Reject"),
    ("reason", "Motif", "Reason"),
    ("already_decided", "Ce brouillon a déjà été traité (approuvé ou rejeté), sans doute dans un autre onglet : rien n'a été envoyé une seconde fois.", "This draft was already decided (approved or rejected), probably in another tab: nothing was sent twice."),
    ("approved_ok", "Brouillon approuvé : le message est dans la file d'envoi.", "Draft approved: the message is queued for sending."),
    ("rejected_ok", "Brouillon rejeté.", "Draft rejected."),
    ("edited_ok", "Brouillon modifié.", "Draft edited."),
    ("moved_ok", "Statut du dossier modifié.", "Case status changed."),
    ("assigned_ok", "Dossier réattribué.", "Case reassigned."),
    ("linked_ok", "Message rattaché.", "Message linked."),
    ("case", "Dossier", "Case"),
    ("client", "Client", "Client"),
    ("category", "Motif", "Category"),
    ("status", "Statut", "Status"),
    ("owner", "Responsable", "Owner"),
    ("priority", "Priorité", "Priority"),
    ("opened", "Ouvert le", "Opened"),
    ("age_days", "Âge (jours)", "Age (days)"),
    ("deadline", "Échéance interne", "Deadline"),
    ("tasks", "Tâches", "Tasks"),
    ("thread", "Fil des messages", "Message thread"),
    ("history", "Historique des statuts", "Status history"),
    ("audit", "Journal d'audit", "Audit events"),
    ("drafts", "Brouillons", "Drafts"),
    ("record_outcome", "Enregistrer la décision", "Record the outcome"),
    ("adjustment", "Avoir / ajustement accordé", "Adjustment approved"),
    ("refused", "Refusé", "Refused"),
    ("waiting_client", "En attente du client", "Waiting for the client"),
    ("in_analysis", "En analyse", "In analysis"),
    ("resolved", "Résolu", "Resolved"),
    ("agreed_amount", "Montant accordé (€)", "Agreed amount (EUR)"),
    ("move", "Changer le statut", "Change the status"),
    ("reassign", "Réattribuer", "Reassign"),
    ("filter", "Filtrer", "Filter"),
    ("all", "tous", "all"),
    ("min_age", "Âge min. (jours)", "Min. age (days)"),
    ("min_amount", "Montant min. (€)", "Min. amount (EUR)"),
    ("max_amount", "Montant max. (€)", "Max. amount (EUR)"),
    ("sort", "Trier par", "Sort by"),
    ("page", "Page", "Page"),
    ("prev", "Précédente", "Previous"),
    ("next", "Suivante", "Next"),
    ("no_cases", "Aucun dossier.", "No case."),
    ("from", "De", "From"),
    ("date", "Date", "Date"),
    ("link", "Rattacher", "Link"),
    ("none_unlinked", "Aucun message en attente de rattachement.", "No message waiting to be linked."),
    ("open_disputes", "Litiges ouverts", "Open disputes"),
    ("count", "Nombre", "Count"),
    ("by_category", "par motif", "by category"),
    ("by_owner", "par responsable", "by owner"),
    ("time_to_resolve", "Délai de résolution", "Time to resolve"),
    ("mean", "moyenne", "mean"),
    ("median", "médiane", "median"),
    ("days", "jours", "days"),
    ("motives_over_time", "Motifs récurrents par mois", "Recurring motives by month"),
    ("overdue_by_age", "Impayés échus par ancienneté", "Overdue amount by age"),
    ("dso", "DSO (délai moyen de paiement)", "DSO (days sales outstanding)"),
    ("drafts_waiting", "Brouillons en attente", "Drafts waiting"),
    ("oldest", "le plus ancien", "oldest"),
    ("nothing_resolved", "aucun dossier résolu", "no case resolved yet"),
    ("not_found", "Introuvable.", "Not found."),
    ("total", "Total", "Total"),
    ("actor", "Par", "By"),
    ("what", "Quoi", "What"),
    ("detail", "Détail", "Detail"),
    ("tone", "ton", "tone"),
    ("disputed", "contesté", "disputed"),
    ("language", "Langue", "Language"),
    ("record", "Enregistrer", "Save"),
    ("no_brief", "Pas de note d'appel.", "No call brief."),
    ("none", "aucun", "none"),
];

/// The string table for `lang`, as Tera's `t`.
pub fn table(lang: Lang) -> HashMap<&'static str, &'static str> {
    WORDS.iter().map(|(k, fr, en)| (*k, if lang == Lang::Fr { *fr } else { *en })).collect()
}

/// One word, for code that is not a template.
pub fn word(lang: Lang, key: &str) -> &'static str {
    WORDS.iter().find(|w| w.0 == key).map(|w| if lang == Lang::Fr { w.1 } else { w.2 }).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = super::WORDS.iter().map(|w| w.0).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len());
    }
}
