"""The general second opinion: a diagnosis or treatment plan checked by another doctor.

The intake is written for the patient (or a parent) in plain words; the review form is for the
reviewing doctor and uses clinical terms.
"""

from core.specialty import (
    AGREES,
    DIFFERS,
    DIFFERS_IN_DETAIL,
    Choice,
    ConcordanceGrade,
    DateField,
    DocumentKind,
    Form,
    LongText,
    Repeating,
    ReportSection,
    RequiredDocument,
    ShowIf,
    SingleChoice,
    Specialty,
    Text,
    YesNo,
)

SLUG = "general"

INTAKE = Form(
    version=1,
    fields=(
        LongText(
            name="diagnosis",
            label="What is the diagnosis?",
            help=(
                "Write it the way your doctor told you, for example “type 2 diabetes” or “a "
                "lump in the thyroid”. A diagnosis is the name of the illness or problem. If "
                "there is no name yet, describe the problem in your own words."
            ),
            required=True,
            max_length=1000,
            rows=3,
        ),
        DateField(
            name="diagnosis_date",
            label="When were you told about it?",
            help="If you don't remember the exact day, choose the 1st of the month.",
            required=True,
            not_before_birth=True,
        ),
        LongText(
            name="tests_done",
            label="Which tests were done to find it?",
            help=(
                "For example blood tests, a scan (X-ray, CT, MRI or ultrasound), or a biopsy "
                "(a tiny piece of the body taken to look at under a microscope). Write “none” "
                "if there were no tests."
            ),
            required=True,
            max_length=2000,
            rows=4,
        ),
        Text(
            name="diagnosed_by",
            label="Which doctor told you?",
            help="Their name and the kind of doctor, for example “Dr Ana Silva, heart doctor”.",
            required=True,
        ),
        Text(
            name="diagnosed_at",
            label="At which hospital or clinic?",
            help="The name of the place and the town.",
            required=True,
        ),
        LongText(
            name="treatment_plan",
            label="What treatment have the doctors suggested?",
            help=(
                "For example medicines, an operation, physiotherapy (exercises with a "
                "therapist), or “wait and check again later”. Write “no treatment yet” if "
                "nothing has been suggested."
            ),
            required=True,
            max_length=3000,
        ),
        YesNo(
            name="takes_medicines",
            label="Do you take any medicines at the moment?",
            help="Count medicines from the pharmacy without a prescription, vitamins and herbs.",
            required=True,
        ),
        Repeating(
            name="medications",
            label="Your medicines",
            help="Add one line for each medicine. The box or the prescription shows the details.",
            required=True,
            show_if=ShowIf("takes_medicines", ("yes",)),
            min_items=1,
            max_items=30,
            item_label="Medicine",
            fields=(
                Text(
                    name="name",
                    label="Name of the medicine",
                    help="As written on the box, for example “metformin”.",
                    required=True,
                    max_length=120,
                ),
                Text(
                    name="dose",
                    label="How much you take each time",
                    help="For example “500 mg”, “1 tablet” or “10 units”.",
                    max_length=60,
                ),
                Text(
                    name="frequency",
                    label="How often",
                    help="For example “twice a day”, “once a week” or “only when needed”.",
                    max_length=80,
                ),
            ),
        ),
        YesNo(
            name="has_allergies",
            label="Are you allergic to any medicines, foods or anything else?",
            required=True,
        ),
        LongText(
            name="allergy_details",
            label="What are you allergic to, and what happens?",
            help="For example “penicillin – itchy rash” or “peanuts – swollen lips”.",
            required=True,
            show_if=ShowIf("has_allergies", ("yes",)),
            max_length=1000,
            rows=3,
        ),
        LongText(
            name="medical_history",
            label="Other health problems and past operations",
            help=(
                "Illnesses you have had for a long time (like asthma), earlier big illnesses, "
                "and operations. You can leave this empty if there are none."
            ),
            max_length=3000,
        ),
        SingleChoice(
            name="smoking",
            label="Do you smoke?",
            help="This can change which treatments are safest for you.",
            choices=(
                Choice("never", "I have never smoked"),
                Choice("former", "I used to smoke but stopped"),
                Choice("current", "I smoke now (cigarettes, cigars, pipe or vaping)"),
                Choice("not_saying", "I'd rather not say"),
            ),
        ),
        SingleChoice(
            name="alcohol",
            label="How often do you drink alcohol?",
            choices=(
                Choice("none", "Never"),
                Choice("occasional", "Now and then (a few times a month or less)"),
                Choice("weekly", "One to four days a week"),
                Choice("most_days", "Most days"),
                Choice("not_saying", "I'd rather not say"),
            ),
        ),
        SingleChoice(
            name="goal",
            label="What do you want from the second opinion?",
            required=True,
            choices=(
                Choice("confirm_diagnosis", "Check that the diagnosis is right"),
                Choice("treatment_options", "Look at my treatment choices"),
                Choice("both", "Both: check the diagnosis and the treatment choices"),
                Choice("other", "Something else"),
            ),
        ),
        LongText(
            name="goal_other",
            label="Tell us what you want from the second opinion",
            required=True,
            show_if=ShowIf("goal", ("other",)),
            max_length=1000,
            rows=3,
        ),
    ),
)

REVIEW = Form(
    # 2: the answers to the patient's questions are core's (one per question), no longer a field.
    version=2,
    fields=(
        LongText(
            name="case_summary",
            label="Summary of the case",
            help="Presentation, key investigations and the working diagnosis as referred.",
            required=True,
        ),
        LongText(
            name="diagnostic_assessment",
            label="Assessment of the diagnosis",
            help=(
                "Whether the records support the diagnosis; differential diagnosis and what "
                "would distinguish between them. State any disagreement explicitly."
            ),
            required=True,
        ),
        LongText(
            name="further_tests",
            label="Recommended further investigations",
            help="Laboratory, imaging, histology or specialist referral, with the reason for each.",
        ),
        LongText(
            name="recommended_treatment",
            label="Recommended management",
            help=(
                "Treatment options with expected benefit and main risks; comment on the current "
                "plan and medication list (interactions, dosing, contraindications)."
            ),
            required=True,
        ),
        SingleChoice(
            name="follow_up_urgency",
            label="Urgency of follow-up with the treating team",
            required=True,
            choices=(
                Choice("routine", "Routine – at the next scheduled appointment"),
                Choice("soon", "Soon – within 2 to 4 weeks"),
                Choice("urgent", "Urgent – within 1 week"),
                Choice(
                    "immediate",
                    "Immediate – same day / emergency department",
                    help="Also contact the patient directly; do not rely on the report alone.",
                ),
            ),
        ),
        LongText(
            name="discordance_comment",
            label="Differences from the original opinion",
            help="What differs from the treating team's diagnosis or plan, and why.",
            max_length=3000,
        ),
    ),
)

SPECIALTY = Specialty(
    slug=SLUG,
    title="General second opinion",
    summary="Choose this when you want another doctor to look at a diagnosis or treatment plan.",
    audience=(
        "Adults and children who have been given a diagnosis or a treatment plan and want "
        "another doctor to check it."
    ),
    intake=INTAKE,
    required_documents=(
        RequiredDocument(
            key="clinic_letters",
            label="Recent clinic letters or a hospital discharge summary",
            help=(
                "Letters your doctors wrote after your appointments, or the summary you got "
                "when you left hospital. A clear photo of each page is fine."
            ),
        ),
        RequiredDocument(
            key="test_results",
            label="Test results",
            help=(
                "Blood test results and the written reports of scans or biopsies. Recommended: "
                "they help the doctor, but you can send your request without them."
            ),
            required=False,
        ),
    ),
    accepted_kinds=(DocumentKind.PDF, DocumentKind.IMAGE),
    review=REVIEW,
    concordance=(
        ConcordanceGrade("agree", "Agree", help="Same diagnosis and management.", level=AGREES),
        ConcordanceGrade(
            "agree_minor",
            "Agree with minor differences",
            help="Same diagnosis; small changes to tests, dosing or follow-up.",
            level=DIFFERS_IN_DETAIL,
        ),
        ConcordanceGrade(
            "partially_disagree",
            "Partially disagree",
            help="Diagnosis or management changed in part, e.g. a different treatment option.",
            level=DIFFERS,
        ),
        ConcordanceGrade(
            "disagree", "Disagree", help="Major change in diagnosis or management.", level=DIFFERS
        ),
    ),
    report_sections=(
        ReportSection("summary", "Summary of the case", ("case_summary",)),
        ReportSection("assessment", "Assessment", ("diagnostic_assessment", "discordance_comment")),
        ReportSection(
            "recommendations",
            "Recommendations",
            ("further_tests", "recommended_treatment", "follow_up_urgency"),
        ),
    ),
    for_children=True,
)
