/// This Percept's version, printed by `percept --version` and stored in model files' metadata.
public enum PerceptVersion {
    public static let current = "0.15.0"
}
