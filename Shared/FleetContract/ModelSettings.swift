/// The model settings ModelFleet knows, checked for type and range wherever settings enter the
/// system: a model version's defaults (registry) and a pipeline stage's settings (orchestrator).
/// Settings it does not know are kept as given, for runtimes that know them.
package enum ModelSettings {
    /// Checks `settings`; the error names `field.<key>`.
    package static func validate(_ settings: [String: JSONValue], field: String) throws(ContractError) {
        for key in ["confidence_threshold", "nms_threshold", "iou_threshold"] {
            if let value = settings[key] {
                guard let number = value.number, (0...1).contains(number) else {
                    throw ContractError(field: "\(field).\(key)", reason: "must be a number from 0 to 1")
                }
            }
        }
        if let value = settings["input_size"] {
            switch value {
            case .number(let side) where side >= 1 && side <= 8_192 && side.rounded() == side: break
            case .array(let sides) where sides.count == 2 && sides.allSatisfy({ ($0.number ?? 0) >= 1 && ($0.number ?? 0) <= 8_192 }): break
            default: throw ContractError(field: "\(field).input_size", reason: "must be a side in pixels or [width, height], 1 to 8192")
            }
        }
        if let value = settings["max_detections"] {
            guard let number = value.number, number >= 1, number.rounded() == number else {
                throw ContractError(field: "\(field).max_detections", reason: "must be a positive whole number")
            }
        }
    }
}
