// categories.ts — the four MMLU categories of the Hendrycks benchmark (hendrycks/test categories.py: each of the 57
// subjects has a subcategory, each subcategory one category): STEM, humanities, social sciences, other.
// Subjects outside the benchmark (a user's own question files) have no category and count only in the average.

export const CATEGORIES = ['stem', 'humanities', 'social_sciences', 'other'] as const;
export type Category = (typeof CATEGORIES)[number];

export const CATEGORY_LABELS: Record<Category, string> = { stem: 'STEM', humanities: 'Humanities', social_sciences: 'Social sciences', other: 'Other' };

const SUBCATEGORY: Record<string, Category> = {
  physics: 'stem', chemistry: 'stem', biology: 'stem', 'computer science': 'stem', math: 'stem', engineering: 'stem',
  history: 'humanities', philosophy: 'humanities', law: 'humanities',
  politics: 'social_sciences', culture: 'social_sciences', economics: 'social_sciences', geography: 'social_sciences', psychology: 'social_sciences',
  other: 'other', business: 'other', health: 'other',
};

const SUBJECTS: Record<string, string> = {
  abstract_algebra: 'math', anatomy: 'health', astronomy: 'physics', business_ethics: 'business', clinical_knowledge: 'health',
  college_biology: 'biology', college_chemistry: 'chemistry', college_computer_science: 'computer science', college_mathematics: 'math',
  college_medicine: 'health', college_physics: 'physics', computer_security: 'computer science', conceptual_physics: 'physics',
  econometrics: 'economics', electrical_engineering: 'engineering', elementary_mathematics: 'math', formal_logic: 'philosophy',
  global_facts: 'other', high_school_biology: 'biology', high_school_chemistry: 'chemistry', high_school_computer_science: 'computer science',
  high_school_european_history: 'history', high_school_geography: 'geography', high_school_government_and_politics: 'politics',
  high_school_macroeconomics: 'economics', high_school_mathematics: 'math', high_school_microeconomics: 'economics',
  high_school_physics: 'physics', high_school_psychology: 'psychology', high_school_statistics: 'math', high_school_us_history: 'history',
  high_school_world_history: 'history', human_aging: 'health', human_sexuality: 'culture', international_law: 'law', jurisprudence: 'law',
  logical_fallacies: 'philosophy', machine_learning: 'computer science', management: 'business', marketing: 'business',
  medical_genetics: 'health', miscellaneous: 'other', moral_disputes: 'philosophy', moral_scenarios: 'philosophy', nutrition: 'health',
  philosophy: 'philosophy', prehistory: 'history', professional_accounting: 'other', professional_law: 'law', professional_medicine: 'health',
  professional_psychology: 'psychology', public_relations: 'politics', security_studies: 'politics', sociology: 'culture',
  us_foreign_policy: 'politics', virology: 'health', world_religions: 'philosophy',
};

/** The category of an MMLU subject, or undefined for a subject outside the benchmark. */
export function categoryOf(subject: string): Category | undefined {
  const sub = SUBJECTS[subject];
  return sub === undefined ? undefined : SUBCATEGORY[sub];
}
