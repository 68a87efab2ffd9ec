"""Patient notices (POSITION, NEAR_TURN, YOUR_TURN) derived from where each patient
stands, remembering the last standing per patient so only changes are told."""

from __future__ import annotations

from typing import Any, NamedTuple

ACTIVE = ("WAITING", "CALLED", "IN_PROGRESS")


class Standing(NamedTuple):
    """Where a patient stood as of `seq`: the entry and how many were ahead. (A tuple:
    one is made per patient per position query, the hub's hottest loop.)"""

    seq: int
    clinic: str
    number: int
    status: str
    ahead: int

    def same_place(self, other: Standing) -> bool:
        return self[1:] == other[1:]

    def same_entry(self, other: Standing) -> bool:
        return self[1:3] == other[1:3]


Notice = tuple[str, dict[str, Any]]


class NoticeBook:
    """The last standing told to each patient subscribed in this process. Results
    older than what a patient already has (by seq) are ignored, so a slow position
    query can never overwrite a newer snapshot."""

    def __init__(self) -> None:
        self._standing: dict[str, Standing] = {}
        # Which of those patients are (or were just seen entering) at each clinic, so
        # a clinic's positions are asked for them only.
        self._at: dict[str, set[str]] = {}

    def _stand(self, patient: str, now: Standing, known: Standing | None) -> None:
        """Record where `patient` stands (`known`: where they stood), keeping the
        by-clinic index in step."""
        if known is None or known.clinic != now.clinic:
            if known is not None:
                self._at.get(known.clinic, set()).discard(patient)
            self.hint(patient, now.clinic)
        # (Otherwise already listed there: a patient stood somewhere is listed there.)
        self._standing[patient] = now

    def hint(self, patient: str, clinic: str) -> None:
        """An event put `patient` at `clinic` (entered there, say): ask there next."""
        self._at.setdefault(clinic, set()).add(patient)

    def patients_at(self, clinic: str) -> list[str]:
        return list(self._at.get(clinic, ()))

    def listens_at(self, clinic: str) -> bool:
        """Whether any patient told here stands (or was just seen entering) at `clinic`."""
        return bool(self._at.get(clinic))

    def baseline(self, patient: str, seq: int, entry: dict[str, Any] | None) -> None:
        """What the patient's `me` snapshot (at `seq`) already told them."""
        known = self._standing.get(patient)
        if known is not None and known.seq > seq:
            return
        if entry and entry.get("status") in ACTIVE and entry.get("number") is not None:
            self._stand(patient, Standing(seq, entry["clinic"], entry["number"],
                                          entry["status"], entry.get("ahead") or 0), known)
        else:
            self.forget(patient)

    def clinics(self) -> set[str]:
        """Where the patients told so far stand (worth a fresh look after a gap)."""
        return {standing.clinic for standing in self._standing.values()}

    def forget(self, patient: str) -> None:
        self._standing.pop(patient, None)
        for patients in self._at.values():
            patients.discard(patient)

    def update(self, patient: str, seq: int, clinic: dict[str, Any],
               position: dict[str, Any], near_ahead: int) -> list[Notice]:
        """The notices a new position (from mmc_clinic_positions at `seq`) calls for."""
        prev = self._standing.get(patient)
        if prev is not None and prev.seq > seq:
            return []
        now = Standing(seq, clinic["clinic"], position["number"], position["status"],
                       position["ahead"])
        self._stand(patient, now, prev)
        if prev is not None and prev.same_place(now):
            return []
        same = prev is not None and prev.same_entry(now)
        code, number, ahead = now.clinic, now.number, now.ahead
        if now.status == "CALLED":
            if same and prev is not None and prev.status in ("CALLED", "IN_PROGRESS"):
                return []
            return [("YOUR_TURN", {"clinic": code, "number": number,
                                   "floor": clinic.get("floor"),
                                   "clinic_name": clinic.get("name"),
                                   "clinic_name_ar": clinic.get("name_ar")})]
        if now.status != "WAITING":
            return []
        out: list[Notice] = [("POSITION", {"clinic": code, "number": number, "ahead": ahead,
                                           "position": ahead + 1,
                                           "eta_minutes": position.get("eta_minutes")})]
        was_near = same and prev is not None and prev.status == "WAITING" \
            and prev.ahead <= near_ahead
        if ahead <= near_ahead and not was_near:
            out.append(("NEAR_TURN", {"clinic": code, "number": number, "ahead": ahead}))
        return out
